// Test support: a plain synchronous MQTT publisher, as a sensor would be.
#pragma once

#include <mqtt/client.h>

#include <string>

namespace telemetry::testing {

class publisher {
public:
    publisher(const std::string& url, const std::string& id)
        : client_(url, id, mqtt::create_options(MQTTVERSION_3_1_1)) {
        mqtt::connect_options o;
        o.set_mqtt_version(MQTTVERSION_3_1_1);
        o.set_clean_session(true);
        client_.connect(o);
    }
    ~publisher() {
        try {
            client_.disconnect();
        } catch (...) {
        }
    }
    publisher(const publisher&) = delete;
    publisher& operator=(const publisher&) = delete;
    void pub(const std::string& topic, const std::string& payload, int qos = 1, bool retained = false) {
        client_.publish(mqtt::make_message(topic, payload, qos, retained));
    }

private:
    mqtt::client client_;
};

}  // namespace telemetry::testing
