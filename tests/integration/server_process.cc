#include "tests/integration/server_process.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace kiln::testing {
namespace {

size_t WriteBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(tolower(c));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

HttpResult Perform(CURL* curl, const std::string& url) {
  HttpResult r;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode code = curl_easy_perform(curl);
  if (code != CURLE_OK) {
    r.error = curl_easy_strerror(code);
  } else {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  }
  curl_easy_cleanup(curl);
  return r;
}

}  // namespace

std::string KilnBinary() { return std::string(KILN_BINARY_DIR) + "/kiln"; }

std::string MotoServer() {
  const std::string venv = std::string(KILN_VENV_BIN) + "/moto_server";
  return std::filesystem::exists(venv) ? venv : "moto_server";
}

std::string TestModelsDir() {
  const char* dir = std::getenv("KILN_TEST_MODELS");
  return dir ? dir : std::string(KILN_BINARY_DIR) + "/test-models";
}

nlohmann::json Body(const HttpResult& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

HttpResult HttpGet(const std::string& url) { return Perform(curl_easy_init(), url); }

HttpResult HttpPost(const std::string& url, const std::string& body,
                    const std::string& content_type) {
  CURL* curl = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, ("Content-Type: " + content_type).c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  HttpResult r = Perform(curl, url);
  curl_slist_free_all(headers);
  return r;
}

HttpResult HttpRequest(const std::string& method, const std::string& url, const std::string& body,
                       const std::vector<std::string>& headers) {
  CURL* curl = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST" || method == "PUT" || !body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  HttpResult r = Perform(curl, url);
  curl_slist_free_all(list);
  return r;
}

HttpResult HttpPostForm(const std::string& url, const std::vector<FormField>& fields) {
  CURL* curl = curl_easy_init();
  curl_mime* mime = curl_mime_init(curl);
  for (const auto& f : fields) {
    curl_mimepart* part = curl_mime_addpart(mime);
    curl_mime_name(part, f.name.c_str());
    curl_mime_data(part, f.value.data(), f.value.size());
    if (!f.filename.empty()) curl_mime_filename(part, f.filename.c_str());
    if (!f.content_type.empty()) curl_mime_type(part, f.content_type.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
  HttpResult r = Perform(curl, url);
  curl_mime_free(mime);
  return r;
}

ServerProcess::ServerProcess(std::vector<std::string> extra_args,
                             std::vector<std::string> wrapper) {
  // Each server gets its own data directory unless the test chose one (to restart on it).
  if (std::find(extra_args.begin(), extra_args.end(), "--data") == extra_args.end()) {
    static std::atomic<int> counter{0};
    own_data_ =
        std::filesystem::temp_directory_path() /
        ("kiln-test-data-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1)));
    extra_args.push_back("--data");
    extra_args.push_back(own_data_.string());
  }
  // The child's output goes to a file, not a pipe: a chatty server can never block on a full
  // pipe that the test is not reading at that moment.
  static std::atomic<int> log_counter{0};
  log_path_ =
      std::filesystem::temp_directory_path() / ("kiln-test-log-" + std::to_string(getpid()) + "-" +
                                                std::to_string(log_counter.fetch_add(1)));
  const int out =
      open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return;
  stderr_fd_ = open(log_path_.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<std::string> args = {KilnBinary(), "serve", "--host",    "127.0.0.1",
                                   "--port",     "0",     "--threads", "1"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  args.insert(args.begin(), wrapper.begin(), wrapper.end());
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out, STDERR_FILENO);
    dup2(out, STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out);
  if (WaitForLog("\"listening\"", std::chrono::seconds(60))) {
    std::smatch m;
    static const std::regex kPort("\"port\":([0-9]+)");
    if (std::regex_search(log_, m, kPort)) port_ = std::stoi(m[1]);
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stderr_fd_ >= 0) close(stderr_fd_);
  if (!log_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove(log_path_, ec);
  }
  if (!own_data_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(own_data_, ec);
  }
}

std::string ServerProcess::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void ServerProcess::ReadAvailable(std::chrono::milliseconds timeout) {
  if (stderr_fd_ < 0) return;
  char buf[65536];
  const ssize_t n = read(stderr_fd_, buf, sizeof(buf));  // from where the last read ended
  if (n > 0) {
    log_.append(buf, static_cast<size_t>(n));
    return;
  }
  // Nothing new yet: look again shortly (a file has no readiness to poll for).
  std::this_thread::sleep_for(std::min(timeout, std::chrono::milliseconds(20)));
}

bool ServerProcess::WaitForLog(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (log_.find(text) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    ReadAvailable(std::min(left, std::chrono::milliseconds(500)));
  }
  return true;
}

void ServerProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int ServerProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      ReadAvailable(std::chrono::milliseconds(0));
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    // Read the log while waiting.
    ReadAvailable(std::chrono::milliseconds(50));
  }
  return -1;
}

CommandResult RunKiln(const std::vector<std::string>& args) {
  std::string cmd = KilnBinary();
  for (const auto& a : args) {
    std::string quoted = "'";
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " " + quoted + "'";
  }
  return RunShell(cmd);
}

CommandResult RunShell(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  CommandResult r;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) r.output.append(buf, n);
  const int status = pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

ChildProcess::ChildProcess(std::vector<std::string> args, const std::string& log_path) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execvp(argv[0], argv.data());
    _exit(127);
  }
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const bool exited =
      WaitUntil(std::chrono::seconds(10), [&] { return waitpid(pid_, nullptr, WNOHANG) == pid_; });
  if (!exited) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace kiln::testing
