// A real RabbitMQ broker for tests: Debian's rabbitmq-server started as a child process on free
// loopback ports (AMQP, Erlang distribution and its own epmd), with its node data in a temporary
// folder, so that tests never touch a broker the machine may run. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace kiln::testing {

class RabbitMq {
 public:
  // Starts the broker and waits until it accepts connections (or fails: see started()).
  explicit RabbitMq(const std::filesystem::path& dir);
  ~RabbitMq();

  bool started() const { return pid_ > 0; }
  // "amqp://guest:guest@127.0.0.1:PORT/" (guest may log in over loopback).
  std::string url() const;
  int port() const { return port_; }
  std::string log() const;
  // Stops the broker (SIGTERM, as an operator's restart would) and starts it again on the same
  // port with the same data: durable queues and persistent messages survive. Returns whether
  // it came back.
  bool Restart();

 private:
  bool Start();
  void Stop();

  std::filesystem::path dir_;
  int port_ = 0;
  int dist_port_ = 0;
  int epmd_port_ = 0;
  pid_t pid_ = -1;
  int starts_ = 0;
};

// A test suite that shares one broker: started before the suite's first test, stopped (and
// its folder, root(), removed) after the last. Each test's SetUp should call
// ExpectBrokerStarted().
class RabbitMqSuite : public ::testing::Test {
 public:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

 protected:
  static void ExpectBrokerStarted();
  static const std::filesystem::path& root() { return *root_; }
  static RabbitMq& broker() { return *broker_; }

 private:
  static std::filesystem::path* root_;
  static RabbitMq* broker_;
};

}  // namespace kiln::testing
