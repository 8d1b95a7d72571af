// The distributed JobQueue: job messages through RabbitMQ (amqp::Broker), job records in a
// BlobStore. JobQueue::Open makes one for "amqp://" URLs; unit tests pass a broker of their own.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "queue/amqp/broker.h"
#include "queue/job_queue.h"

namespace kiln::queue {

using BrokerFactory =
    std::function<absl::StatusOr<std::unique_ptr<amqp::Broker>>(amqp::BrokerOptions)>;

// `make_broker` defaults to amqp::Broker::Start (a real connection).
absl::StatusOr<std::unique_ptr<JobQueue>> OpenAmqpQueue(std::string_view url, QueueOptions options,
                                                        BrokerFactory make_broker = nullptr);

}  // namespace kiln::queue
