# Install-time part of the service's installation (see CMakeLists.txt): the unit with this
# install's paths, the sysusers.d entry, and the default configuration, which never replaces one
# already there. Run from cmake_install.cmake, which sets CMAKE_INSTALL_PREFIX (and DESTDIR in the
# environment, as CPack does) and the TELEMETRY_* variables below.
include("${TELEMETRY_PACKAGING_DIR}/paths.cmake")
telemetry_service_paths(PREFIX "${CMAKE_INSTALL_PREFIX}" SYSCONFDIR "${TELEMETRY_SYSCONFDIR_SETTING}"
                        BINDIR "${TELEMETRY_BINDIR_SETTING}" DOCDIR "${TELEMETRY_DOCDIR_SETTING}"
                        UNITDIR "${TELEMETRY_UNITDIR_SETTING}"
                        SYSUSERSDIR "${TELEMETRY_SYSUSERSDIR_SETTING}")

# A folder of this install's own: installs may run side by side (the tests do).
string(RANDOM LENGTH 10 nonce)
set(staging "${TELEMETRY_BUILD_DIR}/install-staging-${nonce}")
file(MAKE_DIRECTORY "${staging}")
configure_file("${TELEMETRY_PACKAGING_DIR}/broker-bridge.service.in"
               "${staging}/broker-bridge.service" @ONLY)
configure_file("${TELEMETRY_PACKAGING_DIR}/broker-bridge.sysusers"
               "${staging}/broker-bridge.conf" COPYONLY)
file(INSTALL "${staging}/broker-bridge.service" DESTINATION "${TELEMETRY_UNITDIR}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${staging}/broker-bridge.conf" DESTINATION "${TELEMETRY_SYSUSERSDIR}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(REMOVE_RECURSE "${staging}")

# The configuration: an edited one is never overwritten; the shipped default then lands next to it
# as broker-bridge.toml.dist. (The .deb has it as a conffile: dpkg asks instead.)
set(conf "$ENV{DESTDIR}${TELEMETRY_CONFDIR}/broker-bridge.toml")
set(conf_name broker-bridge.toml)
if(EXISTS "${conf}")
  file(SHA256 "${conf}" old_hash)
  file(SHA256 "${TELEMETRY_CONFIG_FILE}" new_hash)
  if(NOT old_hash STREQUAL new_hash)
    set(conf_name broker-bridge.toml.dist)
    message(STATUS "Keeping ${conf}; the shipped default is ${conf_name} beside it")
  endif()
endif()
file(INSTALL "${TELEMETRY_CONFIG_FILE}" DESTINATION "${TELEMETRY_CONFDIR}" RENAME "${conf_name}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
