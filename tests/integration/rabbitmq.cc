#include "tests/integration/rabbitmq.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "core/ids.h"
#include "tests/integration/server_process.h"

namespace kiln::testing {

RabbitMq::RabbitMq(const std::filesystem::path& dir) : dir_(dir) {
  std::filesystem::create_directories(dir_);
  port_ = FreePort();
  dist_port_ = FreePort();
  epmd_port_ = FreePort();
  std::ofstream(dir_ / "rabbitmq.conf") << "listeners.tcp.default = 127.0.0.1:" << port_ << "\n"
                                        << "loopback_users.guest = true\n"
                                        << "log.console = true\n"
                                        << "log.console.level = warning\n"
                                        << "log.file = false\n"
                                        // Longer than any job a test runs.
                                        << "consumer_timeout = 3600000\n";
  std::ofstream(dir_ / "enabled_plugins") << "[].\n";
  if (!Start()) pid_ = -1;
}

RabbitMq::~RabbitMq() {
  Stop();
  RunShell("ERL_EPMD_PORT=" + std::to_string(epmd_port_) + " epmd -kill >/dev/null 2>&1");
}

std::string RabbitMq::url() const {
  return "amqp://guest:guest@127.0.0.1:" + std::to_string(port_) + "/";
}

std::string RabbitMq::log() const { return ReadFile((dir_ / "broker.log").string()); }

bool RabbitMq::Start() {
  const std::string log_path = (dir_ / "broker.log").string();
  ++starts_;
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    const std::string d = dir_.string();
    ::setenv("HOME", d.c_str(), 1);  // the Erlang cookie lives here
    ::setenv("RABBITMQ_CONFIG_FILE", (d + "/rabbitmq.conf").c_str(), 1);
    ::setenv("RABBITMQ_ENABLED_PLUGINS_FILE", (d + "/enabled_plugins").c_str(), 1);
    ::setenv("RABBITMQ_MNESIA_BASE", (d + "/mnesia").c_str(), 1);
    ::setenv("RABBITMQ_LOG_BASE", (d + "/log").c_str(), 1);
    ::setenv("RABBITMQ_PID_FILE", (d + "/rabbit.pid").c_str(), 1);
    ::setenv("RABBITMQ_NODENAME", ("kilntest" + std::to_string(port_) + "@localhost").c_str(), 1);
    ::setenv("RABBITMQ_DIST_PORT", std::to_string(dist_port_).c_str(), 1);
    ::setenv("ERL_EPMD_PORT", std::to_string(epmd_port_).c_str(), 1);
    ::setenv("RABBITMQ_ALLOW_INPUT", "true", 1);  // exec the VM: its pid is this pid
    // With input allowed the VM reads a shell from stdin and stops at end of file: give it a
    // pipe whose write end it holds itself, so that end never comes.
    int in[2];
    if (::pipe(in) == 0) ::dup2(in[0], 0);
    FILE* out = std::fopen(log_path.c_str(), starts_ == 1 ? "w" : "a");
    if (out) {
      ::dup2(::fileno(out), 1);
      ::dup2(::fileno(out), 2);
    }
    ::execl("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server", nullptr);
    ::_exit(127);
  }
  if (pid_ < 0) return false;
  // Ready when a TCP connection to the AMQP port is accepted: the listener starts last.
  const bool up = WaitUntil(std::chrono::seconds(60), [this] {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) return true;  // exited: checked below
    return RunShell("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port_) +
                    "' 2>/dev/null")
               .exit_code == 0;
  });
  if (!up || ::kill(pid_, 0) != 0) {
    pid_ = -1;
    return false;
  }
  return true;
}

void RabbitMq::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const bool exited = WaitUntil(std::chrono::seconds(30), [this] {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == pid_;
  });
  if (!exited) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
}

bool RabbitMq::Restart() {
  Stop();
  return Start();
}

std::filesystem::path* RabbitMqSuite::root_ = nullptr;
RabbitMq* RabbitMqSuite::broker_ = nullptr;

void RabbitMqSuite::SetUpTestSuite() {
  root_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                    ("kiln-rabbitmq-suite-" + NewUlid()));
  broker_ = new RabbitMq(*root_ / "rabbitmq");
}

void RabbitMqSuite::TearDownTestSuite() {
  delete broker_;
  broker_ = nullptr;
  std::error_code ec;
  std::filesystem::remove_all(*root_, ec);
  delete root_;
  root_ = nullptr;
}

void RabbitMqSuite::ExpectBrokerStarted() {
  ASSERT_TRUE(broker_->started()) << "rabbitmq-server did not start:\n" << broker_->log();
}

}  // namespace kiln::testing
