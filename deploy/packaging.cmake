# Installation layout and the Debian package (included at the end of the top-level CMakeLists.txt).
#
#   cmake --install build --prefix /usr      binary, unit file, example config, scripts, docs
#   (cd build && cpack -G DEB)                fhir-mtls-proxy_VERSION_ARCH.deb
#
# /etc and the systemd unit directory are absolute: a package installs them there whatever the
# prefix (use DESTDIR to stage). Runtime dependencies come from dpkg-shlibdeps.
include(GNUInstallDirs)

set(FMP_PKG_NAME fhir-mtls-proxy)
set(FMP_SYSCONF_DIR /etc/${FMP_PKG_NAME})
set(FMP_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE PATH "Where the systemd unit is installed")
set(FMP_SHARE_DIR ${CMAKE_INSTALL_DATADIR}/${FMP_PKG_NAME})
set(FMP_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc/${FMP_PKG_NAME})
set(FMP_DEB_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)

install(FILES ${FMP_DEB_DIR}/proxy.yaml ${PROJECT_SOURCE_DIR}/conf/policy.yaml
        DESTINATION ${FMP_SYSCONF_DIR} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${FMP_DEB_DIR}/logrotate DESTINATION /etc/logrotate.d RENAME ${FMP_PKG_NAME})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/${FMP_PKG_NAME}.service
        DESTINATION ${FMP_SYSTEMD_UNIT_DIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/certs-example/mint.sh ${FMP_DEB_DIR}/mint-example-pki.sh
        DESTINATION ${FMP_SHARE_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/deploy/grafana/fhir-mtls-proxy-dashboard.json
        DESTINATION ${FMP_SHARE_DIR}/grafana)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/prometheus/alerts.yml
              ${PROJECT_SOURCE_DIR}/deploy/prometheus/runbook.md
        DESTINATION ${FMP_SHARE_DIR}/prometheus)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/conf/proxy.yaml
        DESTINATION ${FMP_DOC_DIR})

set(CPACK_PACKAGE_NAME ${FMP_PKG_NAME})
set(CPACK_PACKAGE_VENDOR "fhir-mtls-proxy")
set(CPACK_PACKAGE_CONTACT "fhir-mtls-proxy maintainers <fhir-mtls-proxy@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "mutual-TLS policy gateway for a FHIR server")
set(CPACK_PACKAGE_DESCRIPTION
    "Terminates mutual TLS in front of a FHIR server, extracts the client certificate's identity
(DN, SAN URI, DirectTrust HIPAA category, trust community), decides each FHIR request with YAML
policy rules, and forwards allowed requests with identity headers. Prometheus metrics, JSON audit.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# mint-example-pki.sh needs the openssl CLI; the proxy itself does not.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "openssl")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus, logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${FMP_DEB_DIR}/postinst ${FMP_DEB_DIR}/prerm ${FMP_DEB_DIR}/postrm ${FMP_DEB_DIR}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
