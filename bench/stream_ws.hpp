// stream-bench, WebSocket transport (RFC 6455, no extensions offered): the upgrade request for
// GET /api/v1/ws, the subscribe message, masked client frames, and a reader that reassembles
// the server's unmasked frames into messages. What each message means is decided by the
// connection in stream_bench.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace stream_bench::ws {

enum class opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

inline std::string base64(const unsigned char* p, std::size_t n) {
    static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (std::size_t i = 0; i < n; i += 3) {
        const std::uint32_t b = static_cast<std::uint32_t>(p[i]) << 16 |
                                (i + 1 < n ? static_cast<std::uint32_t>(p[i + 1]) << 8 : 0U) |
                                (i + 2 < n ? static_cast<std::uint32_t>(p[i + 2]) : 0U);
        out += digits[b >> 18 & 63];
        out += digits[b >> 12 & 63];
        out += i + 1 < n ? digits[b >> 6 & 63] : '=';
        out += i + 2 < n ? digits[b & 63] : '=';
    }
    return out;
}

// The request head without Sec-WebSocket-Key (one per attempt, see key_header) and without the
// blank line that ends it. No Sec-WebSocket-Extensions: the server then never compresses.
inline std::string upgrade_head(const std::string& host) {
    return "GET /api/v1/ws HTTP/1.1\r\nHost: " + host +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
}

// "Sec-WebSocket-Key: <16 random bytes, base64>\r\n".
inline std::string key_header(std::mt19937_64& rng) {
    unsigned char key[16];
    for (std::size_t i = 0; i < sizeof key; i += 8) {
        std::uint64_t r = rng();
        for (std::size_t j = 0; j < 8; ++j, r >>= 8) key[i + j] = static_cast<unsigned char>(r);
    }
    return "Sec-WebSocket-Key: " + base64(key, sizeof key) + "\r\n";
}

// {"op":"subscribe","topic":<topic>[,"after":N]}
inline std::string subscribe_message(std::string_view topic, std::optional<std::int64_t> after) {
    std::string m = "{\"op\":\"subscribe\",\"topic\":\"";
    for (const char ch : topic) {
        if (ch == '"' || ch == '\\') m += '\\';
        m += ch;
    }
    m += '"';
    if (after) m += ",\"after\":" + std::to_string(*after);
    m += '}';
    return m;
}

// Appends one whole client frame (FIN set, masked with a fresh key as clients must) to `out`.
inline void append_client_frame(std::string& out, opcode op, std::string_view payload, std::mt19937_64& rng) {
    out += static_cast<char>(0x80 | static_cast<unsigned>(op));
    const std::uint64_t n = payload.size();
    if (n < 126) {
        out += static_cast<char>(0x80 | n);
    } else if (n <= 0xFFFF) {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(n >> 8);
        out += static_cast<char>(n & 0xFF);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(n >> shift & 0xFF);
    }
    const auto mask = static_cast<std::uint32_t>(rng());
    char key[4];
    for (int i = 0; i < 4; ++i) key[i] = static_cast<char>(mask >> (8 * i) & 0xFF);
    out.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) out += static_cast<char>(payload[i] ^ key[i % 4]);
}

// Reassembles the server's frames into messages. Server frames are never masked and, with no
// extension negotiated, carry no RSV bits; control frames may arrive between the fragments of a
// message. Bytes of an unfinished frame are kept for the next call; a message that arrives
// whole in one frame within one call is handed over without a copy.
class frame_reader {
public:
    static constexpr std::uint64_t max_message = 16u << 20;

    // on_message(opcode, std::string_view) for each whole text or binary message;
    // on_control(opcode, std::string_view) for each close, ping or pong frame. Both return false
    // to stop. feed returns false when stopped or when the bytes break the protocol (error()
    // then says how).
    template <typename OnMessage, typename OnControl>
    bool feed(const char* p, std::size_t n, OnMessage&& on_message, OnControl&& on_control) {
        if (partial_.empty()) {
            const std::size_t used = parse(p, n, on_message, on_control);
            if (used == failed) return false;
            partial_.append(p + used, n - used);
            return true;
        }
        partial_.append(p, n);
        const std::size_t used = parse(partial_.data(), partial_.size(), on_message, on_control);
        if (used == failed) return false;
        partial_.erase(0, used);
        return true;
    }

    void reset() {
        partial_.clear();
        message_.clear();
        in_message_ = false;
        error_ = nullptr;
    }

    const char* error() const { return error_; }

private:
    static constexpr std::size_t failed = static_cast<std::size_t>(-1);

    // Consumes the whole frames in [p, p + n); returns the bytes consumed, or `failed`.
    template <typename OnMessage, typename OnControl>
    std::size_t parse(const char* p, std::size_t n, OnMessage& on_message, OnControl& on_control) {
        const auto* b = reinterpret_cast<const unsigned char*>(p);
        std::size_t at = 0;
        for (;;) {
            if (n - at < 2) return at;
            const bool fin = (b[at] & 0x80) != 0;
            const unsigned rsv = b[at] & 0x70;
            const auto op = static_cast<opcode>(b[at] & 0x0F);
            const bool masked = (b[at + 1] & 0x80) != 0;
            std::uint64_t len = b[at + 1] & 0x7F;
            std::size_t head = 2;
            if (len == 126) {
                if (n - at < 4) return at;
                len = static_cast<std::uint64_t>(b[at + 2]) << 8 | b[at + 3];
                head = 4;
            } else if (len == 127) {
                if (n - at < 10) return at;
                len = 0;
                for (std::size_t i = 0; i < 8; ++i) len = len << 8 | b[at + 2 + i];
                head = 10;
            }
            if (rsv) return fail("RSV bits set (no extension was negotiated)");
            if (masked) return fail("masked frame from the server");
            if (len > max_message) return fail("frame too large");
            if (n - at - head < len) return at;
            const std::string_view payload(p + at + head, static_cast<std::size_t>(len));
            at += head + static_cast<std::size_t>(len);
            bool go = true;
            switch (op) {
            case opcode::close:
            case opcode::ping:
            case opcode::pong:
                if (!fin || len > 125) return fail("fragmented or oversize control frame");
                go = on_control(op, payload);
                break;
            case opcode::text:
            case opcode::binary:
                if (in_message_) return fail("new message inside a fragmented one");
                if (fin) {
                    go = on_message(op, payload);
                } else {
                    in_message_ = true;
                    message_op_ = op;
                    message_.assign(payload);
                }
                break;
            case opcode::continuation:
                if (!in_message_) return fail("continuation frame outside a message");
                if (message_.size() + payload.size() > max_message) return fail("message too large");
                message_.append(payload);
                if (fin) {
                    in_message_ = false;
                    go = on_message(message_op_, std::string_view(message_));
                    message_.clear();
                }
                break;
            default:
                return fail("reserved opcode");
            }
            if (!go) return fail(nullptr);
        }
    }

    std::size_t fail(const char* why) {
        error_ = why;
        return failed;
    }

    std::string partial_;  // an unfinished frame
    std::string message_;  // the fragments of an unfinished message
    opcode message_op_ = opcode::text;
    bool in_message_ = false;
    const char* error_ = nullptr;
};

}  // namespace stream_bench::ws
