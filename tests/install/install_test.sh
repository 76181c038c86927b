#!/usr/bin/env bash
# Installation, the systemd unit and the .deb (packaging/), as an administrator would meet them.
#
#   install_test.sh BUILD_DIR SOURCE_DIR VERSION CASE
#
# CASE:
#   tree  cmake --install with DESTDIR and prefix /usr puts every file where the unit and the .deb
#         expect it; with another prefix (no DESTDIR) the unit names that prefix's paths; a second
#         install keeps an edited configuration.
#   run   the installed bridge: --version, then started from a folder outside the source tree with
#         the installed configuration (database moved to a temp folder, port 0), it serves /healthz
#         and the embedded dashboard, survives SIGHUP (systemctl reload) and exits 0 on SIGTERM.
#   unit  the installed unit passes `systemd-analyze verify` (ExecStart rewritten into the DESTDIR
#         tree, since verify wants the binary to exist) with no warning at all, has every hardening
#         setting, and the same check does fail on a broken copy.
#   deb   cpack -G DEB builds a .deb with the binaries, the unit, the conffile, the maintainer
#         scripts and its shared-library dependencies.
# Everything happens in a temp folder that is removed at the end; nothing is installed into /.
set -euo pipefail

build=$(realpath "$1")
src=$(realpath "$2")
version=$3
case_name=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/install-test.XXXXXX")
bridge_pid=
cleanup() {
  if [[ -n $bridge_pid ]] && kill -0 "$bridge_pid" 2>/dev/null; then
    kill -KILL "$bridge_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "--- $*"; }
need() { command -v "$1" >/dev/null || fail "$1 not found (tools/install-deps.sh installs it)"; }
# has_line FILE LINE: FILE has LINE exactly.
has_line() { grep -qxF -- "$2" "$1" || fail "$1 has no line '$2'"; }

# DESTDIR=$tmp/root cmake --install BUILD --prefix /usr: the .deb's layout.
install_tree() {
  local root=$1
  step "DESTDIR=$root cmake --install --prefix /usr"
  DESTDIR=$root timeout 120 cmake --install "$build" --prefix /usr > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
}

# The hardening the service must keep (packaging/broker-bridge.service.in).
unit_settings=(
  "User=broker-bridge" "Group=broker-bridge"
  "ExecReload=/bin/kill -HUP \$MAINPID" "Restart=on-failure" "LimitNOFILE=65536"
  "StateDirectory=broker-bridge" "NoNewPrivileges=yes" "CapabilityBoundingSet=" "AmbientCapabilities="
  "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "PrivateDevices=yes"
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "SystemCallFilter=@system-service"
  "WantedBy=multi-user.target"
)

# rewritten_unit UNIT_FILE BIN_ROOT: a copy of the unit, in a folder of its own, whose ExecStart
# binary is under BIN_ROOT (verify wants it to exist); prints the copy's path.
rewritten_unit() {
  local unit=$1 bin_root=$2 dir
  dir=$(mktemp -d "$tmp/unit.XXXXXX")
  sed "s|^ExecStart=/|ExecStart=$bin_root/|" "$unit" > "$dir/broker-bridge.service"
  grep -q "^ExecStart=$bin_root/" "$dir/broker-bridge.service" || fail "$unit: no ExecStart to rewrite"
  echo "$dir/broker-bridge.service"
}

# verify_unit UNIT_FILE BIN_ROOT: systemd-analyze verify of rewritten_unit; passes only with exit
# status 0 and not a line of output (verify reports a bad value or an unknown setting as a warning
# and still exits 0).
verify_unit() {
  local copy out rc=0
  copy=$(rewritten_unit "$1" "$2")
  out=$(cd "$(dirname "$copy")" && SYSTEMD_LOG_COLOR=0 timeout 60 systemd-analyze verify --man=no \
          "$copy" 2>&1) || rc=$?
  if ((rc != 0)) || [[ -n $out ]]; then
    echo "$out" >&2
    return 1
  fi
}

case $case_name in
tree)
  root=$tmp/root
  install_tree "$root"
  for b in broker-bridge bridge-cli sensor-sim; do
    [[ -x $root/usr/bin/$b ]] || fail "no executable $root/usr/bin/$b"
  done
  conf=$root/etc/broker-bridge/broker-bridge.toml
  unit=$root/lib/systemd/system/broker-bridge.service
  for f in "$conf" "$unit" "$root/usr/lib/sysusers.d/broker-bridge.conf" \
           "$root/usr/share/doc/broker-bridge/README.md" "$root/usr/share/doc/broker-bridge/api.md" \
           "$root/usr/share/doc/broker-bridge/examples/broker-bridge.toml" \
           "$root/usr/share/doc/broker-bridge/examples/mosquitto.conf"; do
    [[ -f $f ]] || fail "not installed: $f"
  done
  [[ -x $root/usr/share/broker-bridge/make-certs.sh ]] || fail "make-certs.sh not installed"
  # No web files: the dashboard is inside the binary.
  if find "$root" -name '*.js' -o -name 'index.html' | grep -q .; then fail "web files installed"; fi
  [[ $(stat -c %a "$conf") == 644 && $(stat -c %a "$unit") == 644 ]] || fail "modes of conf/unit"

  step "the installed configuration"
  has_line "$conf" 'db_path = "/var/lib/broker-bridge/telemetry.db"'
  has_line "$conf" 'listen = "127.0.0.1:8080"'
  has_line "$conf" 'url = "tcp://127.0.0.1:1883"'
  has_line "$conf" 'allow_public_without_auth = false'
  # Authentication stays off: no token, no JWT key.
  if grep -Eq '^[[:space:]]*(\[\[auth\.tokens\]\]|jwt_hs256_keys|token[[:space:]]*=)' "$conf"; then
    fail "$conf turns authentication on"
  fi
  # Apart from the header and the changed lines it is conf/broker-bridge.toml.
  diff <(grep -v -e '^db_path' -e '^url' -e "broker listens on" "$src/conf/broker-bridge.toml") \
       <(sed '1,/^#$/d' "$conf" | grep -v -e '^db_path' -e '^url' -e "Mosquitto listens on") ||
    fail "installed configuration differs from conf/broker-bridge.toml beyond db_path and mqtt.url"

  step "the unit names the installed paths"
  has_line "$unit" "ExecStart=/usr/bin/broker-bridge --config /etc/broker-bridge/broker-bridge.toml"
  has_line "$root/usr/lib/sysusers.d/broker-bridge.conf" \
           'u broker-bridge - "telemetry broker-bridge" /var/lib/broker-bridge'

  step "cmake --install --prefix $tmp/opt (no DESTDIR): the unit follows the prefix"
  timeout 120 cmake --install "$build" --prefix "$tmp/opt" > "$tmp/install2.log" 2>&1 ||
    { cat "$tmp/install2.log" >&2; fail "cmake --install --prefix failed"; }
  has_line "$tmp/opt/lib/systemd/system/broker-bridge.service" \
           "ExecStart=$tmp/opt/bin/broker-bridge --config $tmp/opt/etc/broker-bridge/broker-bridge.toml"
  [[ -x $tmp/opt/bin/broker-bridge && -f $tmp/opt/etc/broker-bridge/broker-bridge.toml ]] ||
    fail "prefix install incomplete"

  step "installing again keeps an edited configuration"
  echo '# edited by the administrator' >> "$conf"
  edited=$(sha256sum < "$conf")
  install_tree "$root"
  [[ $(sha256sum < "$conf") == "$edited" ]] || fail "the edited configuration was overwritten"
  cmp -s "$root/etc/broker-bridge/broker-bridge.toml.dist" "$build/packaging/broker-bridge.toml" ||
    fail "the shipped default is not beside the edited configuration as broker-bridge.toml.dist"
  ;;

run)
  need curl
  root=$tmp/root
  install_tree "$root"
  bin=$root/usr/bin
  step "--version"
  [[ $("$bin/broker-bridge" --version) == "broker-bridge $version" ]] || fail "broker-bridge --version"
  "$bin/bridge-cli" --help > /dev/null || fail "bridge-cli --help"
  "$bin/sensor-sim" --help > /dev/null || fail "sensor-sim --help"

  step "start with the installed configuration, database in a temp folder, port 0"
  # The broker: a port where nothing listens (never a broker someone else runs on 1883); the
  # bridge serves without it and keeps retrying. A small journal keeps the test light.
  conf=$tmp/bridge.toml
  sed -e "s|^db_path = .*|db_path = \"$tmp/state/telemetry.db\"|" \
      -e 's|^listen = .*|listen = "127.0.0.1:0"|' \
      -e 's|^url = .*|url = "tcp://127.0.0.1:1"|' \
      -e 's|^journal_reserve_mb = .*|journal_reserve_mb = 1|' \
      "$root/etc/broker-bridge/broker-bridge.toml" > "$conf"
  for l in "db_path = \"$tmp/state/telemetry.db\"" 'listen = "127.0.0.1:0"' 'journal_reserve_mb = 1'; do
    has_line "$conf" "$l"
  done
  mkdir "$tmp/cwd"
  : > "$tmp/out"  # there before the bridge's shell opens it: the loop below reads it at once
  # From a folder with no web/ and no conf/ in sight: everything it serves comes from the binary.
  (cd "$tmp/cwd" && exec env -i PATH=/usr/bin:/bin "$bin/broker-bridge" --config "$conf") \
    > "$tmp/out" 2> "$tmp/err" &
  bridge_pid=$!
  url=
  for ((i = 0; i < 150; i++)); do
    url=$(sed -n 's/^broker-bridge: serving //p' "$tmp/out")
    [[ -n $url ]] && break
    kill -0 "$bridge_pid" 2>/dev/null || { cat "$tmp/err" >&2; fail "the bridge exited"; }
    sleep 0.1
  done
  [[ -n $url ]] || { cat "$tmp/err" >&2; fail "the bridge did not print its address in 15 s"; }
  get() { curl -sS --noproxy '*' --max-time 5 "$@"; }
  [[ $(get "$url/healthz") == '{"status":"ok"}' ]] || fail "/healthz"
  get -o "$tmp/index.html" -w '%{http_code} %{content_type}\n' "$url/" > "$tmp/code"
  [[ $(cat "$tmp/code") == "200 text/html"* ]] || fail "/ answered $(cat "$tmp/code")"
  cmp -s "$tmp/index.html" "$src/web/index.html" || fail "/ is not web/index.html"
  for a in app.js style.css uPlot.iife.min.js; do
    [[ $(get -o /dev/null -w '%{http_code}' "$url/assets/$a") == 200 ]] || fail "/assets/$a"
  done
  [[ -f $tmp/state/telemetry.db ]] || fail "no database in $tmp/state"

  step "SIGHUP (systemctl reload) does not stop it"
  kill -HUP "$bridge_pid"
  sleep 0.5
  kill -0 "$bridge_pid" 2>/dev/null || { cat "$tmp/err" >&2; fail "the bridge died of SIGHUP"; }
  [[ $(get "$url/healthz") == '{"status":"ok"}' ]] || fail "/healthz after SIGHUP"

  step "SIGTERM (systemctl stop): exit 0"
  kill -TERM "$bridge_pid"
  rc=0
  for ((i = 0; i < 300; i++)); do kill -0 "$bridge_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$bridge_pid" || rc=$?
  bridge_pid=
  ((rc == 0)) || { cat "$tmp/err" >&2; fail "the bridge exited $rc on SIGTERM"; }
  ;;

unit)
  need systemd-analyze
  root=$tmp/root
  install_tree "$root"
  unit=$root/lib/systemd/system/broker-bridge.service
  for l in "${unit_settings[@]}"; do has_line "$unit" "$l"; done

  step "systemd-analyze verify"
  verify_unit "$unit" "$root" || fail "systemd-analyze verify: the unit has problems (above)"

  step "the check fails on broken units"
  broken=$tmp/broken
  mkdir "$broken"
  sed 's/^ProtectSystem=strict/ProtectSystem=bogus/' "$unit" > "$broken/1"
  sed 's/^NoNewPrivileges=yes/NoNewPrivilegs=yes/' "$unit" > "$broken/2"
  sed 's|^ExecStart=/usr/bin/broker-bridge|ExecStart=/usr/bin/no-such-bridge|' \
    "$unit" > "$broken/3"
  for b in 1 2 3; do
    ! cmp -s "$unit" "$broken/$b" || fail "broken copy $b is not broken"
    if verify_unit "$broken/$b" "$root" 2> "$tmp/verify.err"; then
      fail "systemd-analyze verify accepts broken copy $b"
    fi
    echo "broken copy $b refused: $(head -n 1 "$tmp/verify.err")"
  done

  step "systemd-analyze security: exposure"
  # The offline exposure score of the hardened unit (0 to 10, lower is better; 1.3 when written)
  # must stay at most 2.0: dropping a hardening setting or two fails here.
  copy=$(rewritten_unit "$unit" "$root")
  (cd "$tmp" && timeout 60 systemd-analyze security --offline=yes --threshold=20 --no-pager "$copy") \
    > "$tmp/security" 2>&1 || { cat "$tmp/security" >&2; fail "systemd-analyze security: exposure above 2.0"; }
  tail -n 1 "$tmp/security"
  ;;

deb)
  need cpack
  need dpkg-deb
  need file
  step "cpack -G DEB"
  out=$tmp/deb
  mkdir "$out"
  (cd "$build" && timeout 240 cpack -G DEB -B "$out" --config "$build/CPackConfig.cmake") \
    > "$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log" >&2; fail "cpack failed"; }
  arch=$(dpkg --print-architecture)
  deb=$out/broker-bridge_${version}_${arch}.deb
  [[ -f $deb ]] || { ls -l "$out" >&2; fail "no $deb"; }

  step "dpkg-deb -I"
  dpkg-deb -I "$deb" | tee "$tmp/info"
  [[ $(dpkg-deb -f "$deb" Package) == broker-bridge ]] || fail "Package"
  [[ $(dpkg-deb -f "$deb" Version) == "$version" ]] || fail "Version"
  [[ $(dpkg-deb -f "$deb" Architecture) == "$arch" ]] || fail "Architecture"
  [[ -n $(dpkg-deb -f "$deb" Maintainer) && -n $(dpkg-deb -f "$deb" Description) ]] ||
    fail "Maintainer, Description"
  if command -v dpkg-shlibdeps > /dev/null; then
    depends=$(dpkg-deb -f "$deb" Depends)
    for lib in libc6 libstdc++6 libsqlite3-0 libssl3 libpaho-mqtt1.3 libboost-json1.81.0 zlib1g; do
      [[ $depends == *"$lib "* || $depends == *"$lib," || $depends == *"$lib" ]] ||
        fail "Depends lacks $lib: $depends"
    done
  fi
  dpkg-deb -e "$deb" "$tmp/control"
  [[ $(cat "$tmp/control/conffiles") == /etc/broker-bridge/broker-bridge.toml ]] || fail "conffiles"
  for s in postinst prerm postrm; do
    [[ -x $tmp/control/$s ]] || fail "no executable $s"
    sh -n "$tmp/control/$s" || fail "$s: syntax"
  done
  grep -q 'systemd-sysusers /usr/lib/sysusers.d/broker-bridge.conf' "$tmp/control/postinst" ||
    fail "postinst does not create the user from the installed sysusers.d entry"

  step "dpkg-deb -c"
  dpkg-deb -c "$deb" | tee "$tmp/contents"
  for f in ./usr/bin/broker-bridge ./usr/bin/bridge-cli ./usr/bin/sensor-sim \
           ./lib/systemd/system/broker-bridge.service ./etc/broker-bridge/broker-bridge.toml \
           ./usr/lib/sysusers.d/broker-bridge.conf ./usr/share/doc/broker-bridge/README.md; do
    grep -q " $f\$" "$tmp/contents" || fail "the .deb has no $f"
  done
  if grep -v ' root/root ' "$tmp/contents" | grep -q .; then fail "files not owned by root"; fi
  if grep -q ' ./usr/local' "$tmp/contents"; then fail "files under /usr/local"; fi

  step "the packaged files"
  dpkg-deb -x "$deb" "$tmp/x"
  has_line "$tmp/x/lib/systemd/system/broker-bridge.service" \
           "ExecStart=/usr/bin/broker-bridge --config /etc/broker-bridge/broker-bridge.toml"
  cmp -s "$tmp/x/etc/broker-bridge/broker-bridge.toml" "$build/packaging/broker-bridge.toml" ||
    fail "the packaged configuration is not the installed one"
  file "$tmp/x/usr/bin/broker-bridge" | tee /dev/stderr | grep -q 'ELF.*stripped' ||
    fail "broker-bridge is not a stripped ELF executable"
  file "$tmp/x/usr/bin/broker-bridge" | grep -q 'not stripped' && fail "broker-bridge is not stripped"
  [[ $("$tmp/x/usr/bin/broker-bridge" --version) == "broker-bridge $version" ]] || fail "--version"
  if command -v systemd-analyze > /dev/null; then
    verify_unit "$tmp/x/lib/systemd/system/broker-bridge.service" "$tmp/x" ||
      fail "systemd-analyze verify: the packaged unit has problems"
  fi
  ;;

*)
  fail "unknown case $case_name"
  ;;
esac
echo "PASS: $case_name"
