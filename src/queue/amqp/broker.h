// Broker: Kiln's use of RabbitMQ over AMQP 0-9-1 (rabbitmq-c stays inside broker.cc).
//
// Topology (declared by every process, idempotently):
//   queue    kiln.jobs.<model>  quorum, durable; x-delivery-limit, dead-letters to kiln.dead
//   exchange kiln.dead (fanout) -> queue kiln.dead (durable): jobs whose deliveries ran out or
//            that failed for good
//   exchange kiln.events (topic): "job.<id>" job events, "cancel.<id>" cancel requests
//
// Two connections: a publisher (jobs with publisher confirms, events without) used under a
// mutex by any thread, and a consumer owned by one background thread that receives job
// deliveries (manual acks, prefetch), followed events and dead letters, and performs the acks
// and rejects other threads ask for. Both reconnect with backoff; acks for deliveries of an
// earlier connection are dropped (the broker has already requeued those messages).
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::queue::amqp {

struct AmqpUrl {
  std::string host;
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
};

// "amqp://user:pass@host:port/vhost" (user, password, port and vhost optional; the vhost is
// percent-decoded, so "%2F" is "/"). InvalidArgument naming field "queue" otherwise.
absl::StatusOr<AmqpUrl> ParseAmqpUrl(std::string_view url);

// The queue that carries `model`'s jobs.
std::string JobQueueName(std::string_view model);

struct Delivery {
  std::string model;
  uint64_t tag = 0;
  uint64_t connection = 0;  // which consumer connection it came on
  bool redelivered = false;
  int64_t delivery_count = 0;  // x-delivery-count: earlier returns to the queue
  std::string body;
};

struct BrokerOptions {
  AmqpUrl url;
  std::vector<std::string> declare_models;  // job queues to declare (gateways: every model)
  std::vector<std::string> consume_models;  // job queues to consume (workers)
  int prefetch = 8;                         // unacked job deliveries per consumed queue
  int delivery_limit = 20;                  // x-delivery-limit of the job queues
  std::vector<std::string> event_patterns;  // topic patterns to follow on kiln.events
  bool consume_dead_letters = false;
  // Called on the consumer thread; they must not block for long.
  std::function<void(Delivery)> on_job;
  std::function<void(const std::string& routing_key, const std::string& body)> on_event;
  std::function<void(const std::string& body)> on_dead_letter;
};

// What a passive declare reports about a queue.
struct QueueStats {
  int64_t ready = 0;  // messages waiting (not delivered to a consumer)
  int consumers = 0;
};

class Broker {
 public:
  // Starts the consumer thread; connecting happens in the background, so an unreachable
  // broker makes Health() fail instead of failing here.
  static absl::StatusOr<std::unique_ptr<Broker>> Start(BrokerOptions options);
  virtual ~Broker() = default;

  // Publishes a persistent message to the model's job queue and waits for the broker's
  // confirm. Unavailable when the broker is unreachable or refuses it.
  virtual absl::Status PublishJob(const std::string& model, const std::string& body) = 0;
  // Publishes a transient message to kiln.events (no confirm: events may be lost, states are
  // also in the job records).
  virtual absl::Status PublishEvent(const std::string& routing_key, const std::string& body) = 0;
  // Settles a delivery (on the consumer thread, soon): ack; reject, which dead-letters it; or
  // requeue, which returns it to its queue (and counts towards the delivery limit).
  virtual void Ack(const Delivery& d) = 0;
  virtual void Reject(const Delivery& d) = 0;
  virtual void Requeue(const Delivery& d) = 0;
  // Whether the delivery came on the consumer connection that is up now. One from a connection
  // that broke is back in its queue (the broker requeued it) and may be with another consumer.
  virtual bool Live(const Delivery& d) const = 0;
  virtual absl::StatusOr<QueueStats> Stats(const std::string& model) = 0;
  // OK once the consumer connection is up and the topology declared; else the last error.
  virtual absl::Status Health() const = 0;
  // Performs the settlements asked for so far, stops consuming (unsettled deliveries return to
  // their queue when the connection closes) and joins the consumer thread. Idempotent.
  virtual void Stop() = 0;
};

}  // namespace kiln::queue::amqp
