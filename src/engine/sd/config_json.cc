#include "engine/sd/config_json.h"

#include <fstream>
#include <sstream>

#include "core/json_parse.h"
#include "core/strings.h"

namespace kiln::engine::sd {

const nlohmann::json* ConfigReader::Find(const std::string& key) const {
  if (!config_.is_object()) return nullptr;
  auto it = config_.find(key);
  if (it == config_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigReader::Has(const std::string& key) const { return Find(key) != nullptr; }

void ConfigReader::Fail(const std::string& key, const std::string& why) {
  if (status_.ok()) {
    status_ = absl::InvalidArgumentError(StrCat(file_.string(), ": ", key, ": ", why));
  }
}

int64_t ConfigReader::Int(const std::string& key, int64_t def) {
  const nlohmann::json* v = Find(key);
  if (!v) return def;
  if (!v->is_number_integer()) {
    Fail(key, "expected an integer");
    return def;
  }
  return v->get<int64_t>();
}

double ConfigReader::Double(const std::string& key, double def) {
  const nlohmann::json* v = Find(key);
  if (!v) return def;
  if (!v->is_number()) {
    Fail(key, "expected a number");
    return def;
  }
  return v->get<double>();
}

bool ConfigReader::Bool(const std::string& key, bool def) {
  const nlohmann::json* v = Find(key);
  if (!v) return def;
  if (!v->is_boolean()) {
    Fail(key, "expected true or false");
    return def;
  }
  return v->get<bool>();
}

std::string ConfigReader::String(const std::string& key, const std::string& def) {
  const nlohmann::json* v = Find(key);
  if (!v) return def;
  if (!v->is_string()) {
    Fail(key, "expected a string");
    return def;
  }
  return v->get<std::string>();
}

std::vector<std::string> ConfigReader::Strings(const std::string& key) {
  const nlohmann::json* v = Find(key);
  std::vector<std::string> out;
  if (!v) return out;
  if (!v->is_array()) {
    Fail(key, "expected a list of strings");
    return out;
  }
  for (const auto& e : *v) {
    if (!e.is_string()) {
      Fail(key, "expected a list of strings");
      return {};
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> ConfigReader::IntOrList(const std::string& key, int64_t def, size_t n) {
  const nlohmann::json* v = Find(key);
  if (!v) return std::vector<int64_t>(n, def);
  if (v->is_number_integer()) return std::vector<int64_t>(n, v->get<int64_t>());
  std::vector<int64_t> out;
  if (v->is_array()) {
    for (const auto& e : *v) {
      if (!e.is_number_integer()) break;
      out.push_back(e.get<int64_t>());
    }
  }
  if (out.size() != n) {
    Fail(key, StrCat("expected an integer or a list of ", n, " integers"));
    return std::vector<int64_t>(n, def);
  }
  return out;
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::filesystem::path& file) {
  constexpr std::streamsize kMaxBytes = 4 << 20;
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(file.string(), ": cannot be read"));
  std::string text(kMaxBytes + 1, '\0');
  in.read(text.data(), kMaxBytes + 1);
  if (in.gcount() > kMaxBytes) {
    return absl::InvalidArgumentError(StrCat(file.string(), ": larger than 4 MiB"));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  auto parsed = ParseJsonWithLimits(text, file.string(), 16);
  if (!parsed.ok()) return parsed.status();
  return std::move(*parsed);
}

}  // namespace kiln::engine::sd
