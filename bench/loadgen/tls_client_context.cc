#include "bench/loadgen/tls_client_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>

#include <stdexcept>
#include <string>

namespace fmp::bench {

namespace {

[[noreturn]] void throw_openssl(const std::string& what) {
  std::string message = what;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    message += std::string(": ") + buf;
  }
  throw std::runtime_error(message);
}

bool is_ip_literal(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

}  // namespace

TlsClientContext::TlsClientContext(const Options& options)
    : options_(options),
      ctx_(SSL_CTX_new(TLS_client_method())),
      server_name_is_ip_(is_ip_literal(options.server_name)) {
  if (!ctx_) throw_openssl("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx_.get(), options.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (!options.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_.get(), options.cert.c_str()) != 1)
      throw_openssl("client certificate " + options.cert);
    if (SSL_CTX_use_PrivateKey_file(ctx_.get(), options.key.c_str(), SSL_FILETYPE_PEM) != 1)
      throw_openssl("client key " + options.key);
    if (SSL_CTX_check_private_key(ctx_.get()) != 1) throw_openssl("client key does not match");
  }
  if (!options.ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_.get(), options.ca.c_str(), nullptr) != 1)
      throw_openssl("CA " + options.ca);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
  }
  // Sessions are kept by this object only (the newest ticket), never in OpenSSL's internal cache.
  SSL_CTX_set_session_cache_mode(ctx_.get(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_.get(), &TlsClientContext::on_new_session);
  SSL_CTX_set_ex_data(ctx_.get(), 0, this);  // index 0: the app-data slot
}

int TlsClientContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsClientContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), 0));
  if (self->options_.mode != ConnectionMode::kResumed) return 0;  // not kept: OpenSSL frees it
  constexpr std::size_t kMaxStored = 1024;
  self->sessions_.emplace_back(session);  // takes the reference OpenSSL handed over (return 1)
  if (self->sessions_.size() > kMaxStored) self->sessions_.pop_front();
  return 1;
}

ssl::SslPtr TlsClientContext::new_ssl(bool resume) {
  ssl::SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return ssl;
  if (!options_.ca.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    const int ok = server_name_is_ip_
                       ? X509_VERIFY_PARAM_set1_ip_asc(param, options_.server_name.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, options_.server_name.c_str(), 0);
    if (ok != 1) return {};
  }
  if (!server_name_is_ip_) {
    // SSL_set_tlsext_host_name is a macro with an old-style cast: the call it expands to.
    SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(options_.server_name.c_str()));
  }
  if (resume) {
    if (!sessions_.empty()) {
      last_offered_ = std::move(sessions_.back());
      sessions_.pop_back();
    }
    if (last_offered_)
      SSL_set_session(ssl.get(), last_offered_.get());  // the SSL takes a reference
  }
  return ssl;
}

}  // namespace fmp::bench
