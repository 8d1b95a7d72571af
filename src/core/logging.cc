#include "core/logging.h"

#include <atomic>
#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/strings.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace kiln::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_json{true};

std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_logger_mt("kiln");
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    return l;
  }();
  return logger;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void Init(Level min_level, bool json) {
  g_min_level = static_cast<int>(min_level);
  g_json = json;
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_min_level.load(); }

void Write(Level level, std::string_view message, const nlohmann::json& fields) {
  if (!Enabled(level)) return;
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_json) {
    // {"ts":...,"level":...,"msg":...,<fields>}: the fields object is dumped once and spliced in
    // (merging it into a new object would copy every field).
    auto dump = [](const nlohmann::json& j) {
      return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    line = StrCat("{\"ts\":\"", ts, "\",\"level\":\"", LevelName(level),
                  "\",\"msg\":", dump(nlohmann::json(message)));
    if (fields.is_object() && !fields.empty()) {
      std::string rest = dump(fields);
      rest[0] = ',';
      line += rest;
    } else {
      line += '}';
    }
  } else {
    line = ts + " " + LevelName(level) + " " + std::string(message);
    if (fields.is_object() && !fields.empty()) {
      line += " " + fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  Logger()->info(line);
}

}  // namespace kiln::log
