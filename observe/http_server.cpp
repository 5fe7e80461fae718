#include "observe/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <random>

#include "common/error.h"
#include "observe/observer.h"

namespace walfold::observe {

const char* status_page_html();  // observe/status_page.cpp

namespace {

std::string random_hex(int bytes) {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < bytes; ++i) {
    auto b = rd() & 0xff;
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

// Compares without leaking where the first difference is.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string cookie_value(const httplib::Request& req, const std::string& name) {
  const auto header = req.get_header_value("Cookie");
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    auto part = header.substr(pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    pos = end + 1;
  }
  return "";
}

const char* kLoginPage = R"(<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>walfold: sign in</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}input{font-size:1em;padding:.4em}</style>
</head><body><h1>walfold</h1><p>This server requires its bearer token (http.token_file).</p>
<form method="post" action="/login"><input type="password" name="token" autocomplete="off"
 placeholder="token"> <button type="submit">Sign in</button></form></body></html>)";

void security_headers(httplib::Response& res) {
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-store");
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                 "frame-ancestors 'none'");
}

void problems_reply(httplib::Response& res, const std::vector<std::string>& problems) {
  std::string body = problems.empty() ? "ok\n" : "";
  for (const auto& p : problems) body += p + "\n";
  res.status = problems.empty() ? 200 : 503;
  res.set_content(body, "text/plain; charset=utf-8");
}

}  // namespace

HttpServer::HttpServer(Observer& observer)
    : observer_(observer), server_(std::make_unique<httplib::Server>()), csrf_(random_hex(24)) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  const auto& http = observer_.config().http;
  if (!http.token_file.empty()) {
    token_ = read_secret_file(http.token_file);
    if (token_.empty()) throw ConfigError(http.token_file + ": http.token_file is empty");
  }
  auto& svr = *server_;
  svr.new_task_queue = [] { return new httplib::ThreadPool(2); };
  svr.set_read_timeout(std::chrono::seconds(5));
  svr.set_write_timeout(std::chrono::seconds(5));
  svr.set_payload_max_length(64 * 1024);
  route_auth();
  route_reads();
  route_admin();
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        res.status = 500;
        res.set_content(what + "\n", "text/plain");
      });

  listen();
}

void HttpServer::route_auth() {
  auto& svr = *server_;
  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    security_headers(res);
    if (token_.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const auto auth = req.get_header_value("Authorization");
    const bool ok = (auth.rfind("Bearer ", 0) == 0 && same_secret(auth.substr(7), token_)) ||
                    same_secret(cookie_value(req, "walfold_token"), token_);
    if (ok) return httplib::Server::HandlerResponse::Unhandled;
    // The sign-in form's POST (its body is parsed by the route below).
    if (req.method == "POST" && req.path == "/login")
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer realm=\"walfold\"");
    if (req.method == "GET" && req.path == "/")
      res.set_content(kLoginPage, "text/html; charset=utf-8");
    else
      res.set_content("a bearer token is required (http.token_file)\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });

  svr.Post("/login", [this](const httplib::Request& req, httplib::Response& res) {
    if (!token_.empty() && same_secret(req.get_param_value("token"), token_)) {
      res.set_header("Set-Cookie",
                     "walfold_token=" + token_ + "; HttpOnly; SameSite=Strict; Path=/");
      res.set_redirect("/", 303);
      return;
    }
    res.status = token_.empty() ? 404 : 401;
    res.set_content(token_.empty() ? "no token is configured\n" : "wrong token\n", "text/plain");
  });
}

void HttpServer::route_reads() {
  auto& svr = *server_;
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(observer_.metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  svr.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    problems_reply(res, observer_.health_problems());
  });
  svr.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    problems_reply(res, observer_.readiness_problems());
  });
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(status_page_html(), "text/html; charset=utf-8");
  });
  svr.Get("/api/status", [this](const httplib::Request&, httplib::Response& res) {
    auto j = observer_.status_json();
    if (observer_.config().http.admin) j["csrf"] = csrf_;
    res.set_content(j.dump(), "application/json");
  });
  svr.Get("/api/dead", [this](const httplib::Request& req, httplib::Response& res) {
    auto j = observer_.dead_inspect(req.get_param_value("key"));
    if (j.is_null()) {
      res.status = 404;
      res.set_content(R"({"error":"not a dead key"})", "application/json");
      return;
    }
    res.set_content(j.dump(), "application/json");
  });
}

void HttpServer::route_admin() {
  auto& svr = *server_;
  auto admin = [this](bool retry) {
    return [this, retry](const httplib::Request& req, httplib::Response& res) {
      auto refuse = [&](int status, const std::string& why) {
        res.status = status;
        res.set_content(nlohmann::json{{"error", why}}.dump(), "application/json");
      };
      if (!observer_.config().http.admin)
        return refuse(403, "dead-letter operations are off (http.admin: false)");
      // CSRF: the token only a page of this origin could read from /api/status, in a header
      // a cross-site form cannot set; and a browser's Origin, when sent, must be this host.
      if (!same_secret(req.get_header_value("X-CSRF-Token"), csrf_))
        return refuse(403, "missing or wrong X-CSRF-Token");
      const auto origin = req.get_header_value("Origin");
      if (!origin.empty() && origin != "http://" + req.get_header_value("Host"))
        return refuse(403, "cross-origin request refused");
      auto body = nlohmann::json::parse(req.body, nullptr, false);
      if (body.is_discarded() || !body.contains("key") || !body["key"].is_string())
        return refuse(400, "expected {\"key\": \"...\"}");
      const auto key = body["key"].get<std::string>();
      try {
        if (retry) {
          if (!observer_.dead_retry(key)) return refuse(404, "key " + key + " is not dead");
          res.set_content(nlohmann::json{{"retried", key}}.dump(), "application/json");
        } else {
          auto n = observer_.dead_purge(key);
          if (n < 0) return refuse(404, "key " + key + " is not dead");
          res.set_content(nlohmann::json{{"purged", key}, {"jobs", n}}.dump(), "application/json");
        }
      } catch (const std::exception& e) {
        refuse(503, e.what());
      }
    };
  };
  svr.Post("/api/dead/retry", admin(true));
  svr.Post("/api/dead/purge", admin(false));
}

void HttpServer::listen() {
  const auto& http = observer_.config().http;
  auto& svr = *server_;
  if (http.port == 0)
    port_ = svr.bind_to_any_port(http.host);
  else
    port_ = svr.bind_to_port(http.host, http.port) ? http.port : -1;
  if (port_ <= 0)
    throw UnavailableError("http: cannot listen on " + http.host + ":" + std::to_string(http.port) +
                           " (in use by another process? set http.listen, or 'off')");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // stop() is a no-op until the server runs: wait for it, so a stop right after start ends it.
  for (int i = 0; i < 5000 && !server_->is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  spdlog::info("http: serving /metrics, /healthz, /readyz and the status page on http://{}:{}/{}",
               http.host.find(':') != std::string::npos ? "[" + http.host + "]" : http.host, port_,
               token_.empty() ? "" : " (bearer token required)");
}

void HttpServer::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace walfold::observe
