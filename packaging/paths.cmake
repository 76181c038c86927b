# Where the service's files go for a given install prefix, decided when installing (the prefix of
# `cmake --install --prefix`, or /usr when CPack builds the .deb), not when configuring. Used by
# install.cmake at install time and by CMakeLists.txt for the .deb's conffiles.
#
# telemetry_service_paths(PREFIX <prefix> SYSCONFDIR <dir> BINDIR <dir> DOCDIR <dir>
#                         UNITDIR <dir or empty> SYSUSERSDIR <dir or empty>)
# sets TELEMETRY_CONFDIR, TELEMETRY_BINDIR, TELEMETRY_DOCDIR, TELEMETRY_UNITDIR and
# TELEMETRY_SYSUSERSDIR (absolute) in the caller's scope.
#   SYSCONFDIR follows GNUInstallDirs: relative dirs are under the prefix, except that prefix /usr
#   maps etc to /etc and /opt/<x> maps it to /etc/opt/<x>; the configuration is in <it>/broker-bridge.
#   UNITDIR, when empty: /lib/systemd/system for prefix /usr (Debian 12's place for packages'
#   units), else <prefix>/lib/systemd/system (systemd also reads /usr/local/lib/systemd/system).
#   SYSUSERSDIR, when empty: <prefix>/lib/sysusers.d.
function(telemetry_service_paths)
  cmake_parse_arguments(A "" "PREFIX;SYSCONFDIR;BINDIR;DOCDIR;UNITDIR;SYSUSERSDIR" "" ${ARGN})
  set(prefix "${A_PREFIX}")
  string(REGEX REPLACE "(.)/+$" "\\1" prefix "${prefix}")
  macro(_under_prefix dir out)
    if(IS_ABSOLUTE "${dir}")
      set(${out} "${dir}")
    elseif(prefix STREQUAL "/")
      set(${out} "/${dir}")
    else()
      set(${out} "${prefix}/${dir}")
    endif()
  endmacro()

  if(IS_ABSOLUTE "${A_SYSCONFDIR}")
    set(sysconf "${A_SYSCONFDIR}")
  elseif(prefix STREQUAL "/usr" AND A_SYSCONFDIR STREQUAL "etc")
    set(sysconf "/etc")
  elseif(prefix MATCHES "^/opt/(.*)" AND A_SYSCONFDIR STREQUAL "etc")
    set(sysconf "/etc${prefix}")
  else()
    _under_prefix("${A_SYSCONFDIR}" sysconf)
  endif()
  _under_prefix("${A_BINDIR}" bindir)
  _under_prefix("${A_DOCDIR}" docdir)
  if(A_UNITDIR)
    _under_prefix("${A_UNITDIR}" unitdir)
  elseif(prefix STREQUAL "/usr")
    set(unitdir "/lib/systemd/system")
  else()
    _under_prefix("lib/systemd/system" unitdir)
  endif()
  if(A_SYSUSERSDIR)
    _under_prefix("${A_SYSUSERSDIR}" sysusersdir)
  else()
    _under_prefix("lib/sysusers.d" sysusersdir)
  endif()
  set(TELEMETRY_CONFDIR "${sysconf}/broker-bridge" PARENT_SCOPE)
  set(TELEMETRY_BINDIR "${bindir}" PARENT_SCOPE)
  set(TELEMETRY_DOCDIR "${docdir}" PARENT_SCOPE)
  set(TELEMETRY_UNITDIR "${unitdir}" PARENT_SCOPE)
  set(TELEMETRY_SYSUSERSDIR "${sysusersdir}" PARENT_SCOPE)
endfunction()
