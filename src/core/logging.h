// Structured logging: one JSON object per line on stderr, with a level, a message and fields.
// Thread-safe (spdlog's synchronized sink).
#pragma once

#include <string_view>

#include "nlohmann/json.hpp"

namespace kiln::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Sets the minimum level; `json` false switches to plain text for terminals.
void Init(Level min_level, bool json);

void Write(Level level, std::string_view message, const nlohmann::json& fields = {});

// Whether lines of `level` are written: check it before building the fields of a line on a hot
// path, since they are built even when the line is not.
bool Enabled(Level level);

inline void Debug(std::string_view m, const nlohmann::json& f = {}) { Write(Level::kDebug, m, f); }
inline void Info(std::string_view m, const nlohmann::json& f = {}) { Write(Level::kInfo, m, f); }
inline void Warn(std::string_view m, const nlohmann::json& f = {}) { Write(Level::kWarn, m, f); }
inline void Error(std::string_view m, const nlohmann::json& f = {}) { Write(Level::kError, m, f); }

}  // namespace kiln::log
