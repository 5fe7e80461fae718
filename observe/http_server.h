// walfold's HTTP server (cpp-httplib): GET /metrics, /healthz, /readyz, / (the status page),
// /api/status, /api/dead?key=K; POST /api/dead/retry and /api/dead/purge (http.admin only,
// with the page's CSRF token in X-CSRF-Token). With http.token_file every request needs
// `Authorization: Bearer <token>` (or the cookie the page's sign-in form sets).
#pragma once

#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace walfold::observe {

class Observer;

class HttpServer {
 public:
  explicit HttpServer(Observer& observer);
  ~HttpServer();
  // Binds http.listen (throws UnavailableError when it cannot) and serves on its own thread.
  void start();
  void stop();
  int port() const { return port_; }

 private:
  void route_auth();   // the bearer token check and the sign-in form
  void route_reads();  // /metrics, /healthz, /readyz, /, /api/status, /api/dead
  void route_admin();  // POST /api/dead/retry and /api/dead/purge
  void listen();       // binds http.listen and starts the server's thread

  Observer& observer_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string token_;  // empty: no token required
  std::string csrf_;
  int port_ = 0;
};

}  // namespace walfold::observe
