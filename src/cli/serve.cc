// `kiln serve`: load the models, serve the API, stop cleanly on SIGINT/SIGTERM.
#include <torch/torch.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <thread>

#include "api/routes.h"
#include "cli/commands.h"
#include "core/logging.h"
#include "engine/model_repository.h"
#include "http/server.h"
#include "yaml-cpp/yaml.h"

namespace kiln::cli {

std::string ApplyServeConfig(const std::string& path, ServeOptions& o, const ServeOptions& d) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return path + ": " + e.what();
  }
  if (!root.IsMap()) return path + ": must be a YAML map";
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    try {
      auto set_str = [&](std::string& field, const std::string& def) {
        if (field == def) field = kv.second.as<std::string>();
      };
      if (key == "host")
        set_str(o.host, d.host);
      else if (key == "port") {
        if (o.port == d.port) o.port = kv.second.as<int>();
      } else if (key == "models")
        set_str(o.models, d.models);
      else if (key == "data")
        set_str(o.data, d.data);
      else if (key == "queue")
        set_str(o.queue, d.queue);
      else if (key == "store")
        set_str(o.store, d.store);
      else if (key == "role")
        set_str(o.role, d.role);
      else if (key == "device")
        set_str(o.device, d.device);
      else if (key == "threads") {
        if (o.threads == d.threads) o.threads = kv.second.as<int>();
      } else
        return path + ": unknown key '" + key + "'";
    } catch (const YAML::Exception& e) {
      return path + ": key '" + key + "': " + e.what();
    }
  }
  if (o.port < 0 || o.port > 65535) return path + ": key 'port': must be in 0..65535";
  return "";
}

int RunServe(ServeOptions o) {
  if (o.role != "all") {
    log::Error("only --role all (the embedded mode) is available in this build",
               {{"role", o.role}});
    return 2;
  }
  if (!o.queue.empty() || !o.store.empty()) {
    log::Error("--queue and --store arrive with the serving core; this build serves synchronously");
    return 2;
  }
  // LibTorch from Debian starts with one intra-op thread; 0 means use every core.
  at::set_num_threads(o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::error_code ec;
  std::filesystem::create_directories(o.data, ec);
  if (ec) {
    log::Error("cannot create the data directory", {{"data", o.data}, {"error", ec.message()}});
    return 1;
  }

  auto models = engine::ModelRepository::Load(o.models, o.device);
  if (!models.ok()) {
    log::Error("cannot load models", {{"error", std::string(models.status().message())}});
    return 1;
  }

  api::ApiContext context;
  context.models = models->get();
  http::Router router = api::MakeRouter();
  api::AddRoutes(router, context);

  http::ServerOptions options;
  options.host = o.host;
  options.port = static_cast<uint16_t>(o.port);
  auto server = http::Server::Start(options, router);
  if (!server.ok()) {
    log::Error("cannot start the server", {{"error", std::string(server.status().message())}});
    return 1;
  }
  log::Info("listening", {{"url", "http://" + o.host + ":" + std::to_string((*server)->port())},
                          {"port", (*server)->port()},
                          {"models", (*models)->entries().size()}});

  // Wait for a signal; nothing runs inside a signal handler.
  boost::asio::io_context signals_io;
  boost::asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  int received = 0;
  signals.async_wait([&](const boost::system::error_code&, int sig) { received = sig; });
  signals_io.run();

  log::Info("shutting down", {{"signal", received}, {"in_flight", (*server)->in_flight()}});
  (*server)->Shutdown(std::chrono::seconds(60));
  log::Info("stopped");
  return 0;
}

}  // namespace kiln::cli
