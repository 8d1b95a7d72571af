// Test helpers: run `kiln` as a child process (a server on a free loopback port, or a CLI
// command), and talk HTTP to it with libcurl. Not thread-safe unless stated.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace kiln::testing {

std::string KilnBinary();
// moto_server (the S3 API for the store tests) from the project venv, where install-deps.sh puts
// it; else whichever is on PATH.
std::string MotoServer();
std::string TestModelsDir();

struct HttpResult {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string error;                           // transport error, empty when a response came
};

struct FormField {
  FormField(std::string name, std::string value, std::string filename = "",
            std::string content_type = "")
      : name(std::move(name)),
        value(std::move(value)),
        filename(std::move(filename)),
        content_type(std::move(content_type)) {}
  std::string name;
  std::string value;
  std::string filename;  // non-empty: sent as a file part
  std::string content_type;
};

// The JSON body of an answer, or null when it is not JSON.
nlohmann::json Body(const HttpResult& r);

// libcurl requests; thread-safe.
HttpResult HttpGet(const std::string& url);
HttpResult HttpPost(const std::string& url, const std::string& body,
                    const std::string& content_type);
// Any method, with extra "Name: value" headers.
HttpResult HttpRequest(const std::string& method, const std::string& url, const std::string& body,
                       const std::vector<std::string>& headers);
HttpResult HttpPostForm(const std::string& url, const std::vector<FormField>& fields);

// `kiln serve --port 0 ...` with its stdout and stderr captured in a file; the port is read from
// its "listening" log line. The destructor kills the process if it still runs.
class ServerProcess {
 public:
  // `wrapper`, when given, is the start of the command line, before the kiln binary (a program
  // that sets up the server's environment and then execs the rest, keeping the pid).
  explicit ServerProcess(std::vector<std::string> extra_args,
                         std::vector<std::string> wrapper = {});
  ~ServerProcess();
  pid_t pid() const { return pid_; }

  bool started() const { return port_ != 0; }
  std::string url() const;
  // Waits until the log contains `text`, up to `timeout`. Returns whether it appeared.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds timeout);
  std::string log() const { return log_; }
  void Signal(int sig);
  // Waits for exit; returns the exit code (or 128 + signal), or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);

 private:
  void ReadAvailable(std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int stderr_fd_ = -1;  // reads the child's log file
  std::filesystem::path log_path_;
  int port_ = 0;
  std::string log_;
  bool exited_ = false;
  std::filesystem::path own_data_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Another program a test needs (Prometheus, an OTLP receiver): started with its output going to
// `log_path`, killed (SIGTERM, then SIGKILL) by the destructor.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, const std::string& log_path);
  ~ChildProcess();
  bool started() const { return pid_ > 0; }
  // Whether it still runs (it has not exited).
  bool Running();

 private:
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot bind port 0).
int FreePort();

// Runs a shell command to completion, capturing stdout and stderr.
CommandResult RunShell(const std::string& command);

// Runs `kiln args...` to completion.
CommandResult RunKiln(const std::vector<std::string>& args);

std::string ReadFile(const std::string& path);

// Re-checks `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& condition);

}  // namespace kiln::testing
