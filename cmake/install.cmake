# `cmake --install BUILD [--prefix P]` (DESTDIR honoured): the programs, the
# example config, the systemd unit and sysusers.d entry, the man pages.
#   sbin/ringmx                          the daemon
#   bin/ringmxctl, bin/ringmx-spool      queue and spool tools (ringmxctl loads
#                                        ringmx-spool from its own directory)
#   bin/ringmx-bench                     the load generator
#   etc/ringmx/ringmx.toml               deploy/ringmx.toml (every key at its default)
#   lib/systemd/system/ringmx.service    deploy/ringmx.service.in, paths filled in
#   lib/sysusers.d/ringmx.conf           the ringmx system user the unit runs as
#   share/man/man{1,5,8}/                docs/man/*: ringmx-bench(1), ringmx.toml(5),
#                                        ringmx(8), ringmxctl(8)
# Relative directories are under the prefix given at install time; packagers
# set absolute ones (-DCMAKE_INSTALL_SYSCONFDIR=/etc,
# -DRINGMX_SYSTEMD_UNIT_DIR=/lib/systemd/system).
include(GNUInstallDirs)

set(RINGMX_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd unit goes (relative: under the install prefix)")
set(RINGMX_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING
    "Where the sysusers.d entry for the ringmx user goes (relative: under the install prefix)")

install(TARGETS ringmx RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS ringmx-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/tools/ringmxctl ${PROJECT_SOURCE_DIR}/tools/ringmx-spool
        DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/ringmx.toml
        DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/ringmx)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/ringmx.sysusers.conf
        DESTINATION ${RINGMX_SYSUSERS_DIR} RENAME ringmx.conf)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/ringmx-bench.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/ringmx.toml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/ringmx.8 ${PROJECT_SOURCE_DIR}/docs/man/ringmxctl.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# The unit names the installed daemon and config, so it is written at install
# time, when the prefix is known (--prefix may differ from configure time);
# file(INSTALL) puts $DESTDIR in front itself, as install() does.
install(CODE "
  function(ringmx_full out dir)
    if(IS_ABSOLUTE \"\${dir}\")
      set(\${out} \"\${dir}\" PARENT_SCOPE)
    else()
      set(\${out} \"\${CMAKE_INSTALL_PREFIX}/\${dir}\" PARENT_SCOPE)
    endif()
  endfunction()
  ringmx_full(RINGMX_FULL_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
  ringmx_full(RINGMX_FULL_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  ringmx_full(unit_dir \"${RINGMX_SYSTEMD_UNIT_DIR}\")
  # Only these two names are replaced (configure_file would also eat the unit's @groups).
  # The install script runs with old policies, where a quoted \"@NAME@\" is expanded.
  cmake_policy(PUSH)
  cmake_policy(SET CMP0053 NEW)
  file(READ \"${PROJECT_SOURCE_DIR}/deploy/ringmx.service.in\" unit)
  string(REPLACE \"@RINGMX_FULL_SBINDIR@\" \"\${RINGMX_FULL_SBINDIR}\" unit \"\${unit}\")
  string(REPLACE \"@RINGMX_FULL_SYSCONFDIR@\" \"\${RINGMX_FULL_SYSCONFDIR}\" unit \"\${unit}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/deploy/ringmx.service\" \"\${unit}\")
  cmake_policy(POP)
  file(INSTALL DESTINATION \"\${unit_dir}\" TYPE FILE
       FILES \"${PROJECT_BINARY_DIR}/deploy/ringmx.service\")
")
