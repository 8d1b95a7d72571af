#include "queue/amqp/broker.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <atomic>
#include <charconv>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/logging.h"
#include "core/status_util.h"
#include "core/strings.h"

namespace kiln::queue::amqp {
namespace {

constexpr amqp_channel_t kJobs = 1;     // consumer: job queues; publisher: confirmed jobs
constexpr amqp_channel_t kEvents = 2;   // consumer: followed events; publisher: events
constexpr amqp_channel_t kDead = 3;     // consumer: dead letters
constexpr amqp_channel_t kPassive = 3;  // publisher: passive declares (Stats)
constexpr char kEventsExchange[] = "kiln.events";
constexpr char kDeadExchange[] = "kiln.dead";
constexpr char kDeadQueue[] = "kiln.dead";

amqp_bytes_t Bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
std::string ToString(amqp_bytes_t b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

int FromHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return InvalidField("queue", "a '%' in the URL is not followed by two hex digits");
    }
    const int hi = FromHex(s[i + 1]), lo = FromHex(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return InvalidField("queue", "a '%' in the URL is not followed by two hex digits");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// The reason an RPC failed, in words.
std::string ReplyError(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return StrCat("the broker closed the connection: ", ToString(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return StrCat("the broker closed the channel: ", ToString(m->reply_text));
      }
      return "the broker answered with an error";
  }
  return "unknown error";
}

int64_t IntField(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8:
      return v.value.i8;
    case AMQP_FIELD_KIND_U8:
      return v.value.u8;
    case AMQP_FIELD_KIND_I16:
      return v.value.i16;
    case AMQP_FIELD_KIND_U16:
      return v.value.u16;
    case AMQP_FIELD_KIND_I32:
      return v.value.i32;
    case AMQP_FIELD_KIND_U32:
      return v.value.u32;
    case AMQP_FIELD_KIND_I64:
      return v.value.i64;
    case AMQP_FIELD_KIND_U64:
      return static_cast<int64_t>(v.value.u64);
    default:
      return 0;
  }
}

// One AMQP connection with its channels open. Not thread-safe: one owner at a time.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const AmqpUrl& url, int heartbeat_s,
                                                          std::initializer_list<int> channels) {
    auto c = std::unique_ptr<Connection>(new Connection());
    c->state_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(c->state_);
    if (!socket) return absl::UnavailableError("cannot create a socket for the broker");
    timeval connect_timeout{5, 0};
    const int rc = amqp_socket_open_noblock(socket, url.host.c_str(), url.port, &connect_timeout);
    if (rc != AMQP_STATUS_OK) {
      return absl::UnavailableError(StrCat("cannot reach the broker at ", url.host, ":", url.port,
                                           ": ", amqp_error_string2(rc)));
    }
    timeval rpc_timeout{10, 0};
    amqp_set_rpc_timeout(c->state_, &rpc_timeout);
    amqp_rpc_reply_t r = amqp_login(c->state_, url.vhost.c_str(), 0, 131072, heartbeat_s,
                                    AMQP_SASL_METHOD_PLAIN, url.user.c_str(), url.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      return absl::UnavailableError(StrCat("the broker at ", url.host, ":", url.port,
                                           " refused the login of user '", url.user, "' to vhost '",
                                           url.vhost, "': ", ReplyError(r)));
    }
    c->logged_in_ = true;
    for (int ch : channels) {
      amqp_channel_open(c->state_, static_cast<amqp_channel_t>(ch));
      KILN_RETURN_IF_ERROR(c->Check("opening a channel"));
    }
    return c;
  }

  ~Connection() {
    if (logged_in_ && healthy_) amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(state_);
  }

  amqp_connection_state_t state() { return state_; }
  void MarkBroken() { healthy_ = false; }

  absl::Status Check(std::string_view what) {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(state_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return absl::OkStatus();
    healthy_ = false;
    return absl::UnavailableError(StrCat(what, ": ", ReplyError(r)));
  }

  // Declares the shared topology and the job queues of `models` on `channel`.
  absl::Status DeclareTopology(amqp_channel_t channel, const std::vector<std::string>& models,
                               int delivery_limit) {
    amqp_exchange_declare(state_, channel, amqp_cstring_bytes(kEventsExchange),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    KILN_RETURN_IF_ERROR(Check("declaring exchange kiln.events"));
    amqp_exchange_declare(state_, channel, amqp_cstring_bytes(kDeadExchange),
                          amqp_cstring_bytes("fanout"), 0, 1, 0, 0, amqp_empty_table);
    KILN_RETURN_IF_ERROR(Check("declaring exchange kiln.dead"));
    amqp_queue_declare(state_, channel, amqp_cstring_bytes(kDeadQueue), 0, 1, 0, 0,
                       amqp_empty_table);
    KILN_RETURN_IF_ERROR(Check("declaring queue kiln.dead"));
    amqp_queue_bind(state_, channel, amqp_cstring_bytes(kDeadQueue),
                    amqp_cstring_bytes(kDeadExchange), amqp_cstring_bytes(""), amqp_empty_table);
    KILN_RETURN_IF_ERROR(Check("binding queue kiln.dead"));
    for (const std::string& model : models) {
      amqp_table_entry_t args[3];
      args[0].key = amqp_cstring_bytes("x-queue-type");
      args[0].value.kind = AMQP_FIELD_KIND_UTF8;
      args[0].value.value.bytes = amqp_cstring_bytes("quorum");
      args[1].key = amqp_cstring_bytes("x-delivery-limit");
      args[1].value.kind = AMQP_FIELD_KIND_I64;
      args[1].value.value.i64 = delivery_limit;
      args[2].key = amqp_cstring_bytes("x-dead-letter-exchange");
      args[2].value.kind = AMQP_FIELD_KIND_UTF8;
      args[2].value.value.bytes = amqp_cstring_bytes(kDeadExchange);
      const std::string name = JobQueueName(model);
      amqp_queue_declare(state_, channel, Bytes(name), 0, 1, 0, 0, amqp_table_t{3, args});
      KILN_RETURN_IF_ERROR(Check(StrCat("declaring queue ", name,
                                        " (an existing queue of that name must be a quorum "
                                        "queue with the same arguments)")));
    }
    return absl::OkStatus();
  }

 private:
  Connection() = default;
  amqp_connection_state_t state_ = nullptr;
  bool logged_in_ = false;
  bool healthy_ = true;
};

class BrokerImpl final : public Broker {
 public:
  explicit BrokerImpl(BrokerOptions options) : options_(std::move(options)) {}
  ~BrokerImpl() override { Stop(); }

  void StartThread() {
    thread_ = std::thread([this] { ConsumeLoop(); });
  }

  absl::Status PublishJob(const std::string& model, const std::string& body) override {
    return Publish(kJobs, "", JobQueueName(model), body, /*persistent=*/true);
  }

  absl::Status PublishEvent(const std::string& routing_key, const std::string& body) override {
    return Publish(kEvents, kEventsExchange, routing_key, body, /*persistent=*/false);
  }

  bool Live(const Delivery& d) const override {
    absl::MutexLock lock(&mu_);
    return d.connection == connection_;
  }

  void Ack(const Delivery& d) override { Settle(d, Settlement::kAck); }
  void Reject(const Delivery& d) override { Settle(d, Settlement::kReject); }
  void Requeue(const Delivery& d) override { Settle(d, Settlement::kRequeue); }

  absl::StatusOr<QueueStats> Stats(const std::string& model) override {
    absl::MutexLock lock(&publish_mu_);
    absl::Status last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (absl::Status s = EnsurePublisher(); !s.ok()) return s;
      amqp_queue_declare_ok_t* ok = amqp_queue_declare(
          publisher_->state(), kPassive, Bytes(JobQueueName(model)), 1, 0, 0, 0, amqp_empty_table);
      last = publisher_->Check(StrCat("reading the length of queue ", JobQueueName(model)));
      if (last.ok() && ok)
        return QueueStats{ok->message_count, static_cast<int>(ok->consumer_count)};
      publisher_.reset();
    }
    return last;
  }

  absl::Status Health() const override {
    absl::MutexLock lock(&mu_);
    return health_;
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&publish_mu_);
    publisher_.reset();
  }

 private:
  struct Settlement {
    enum Kind { kAck, kReject, kRequeue };
    uint64_t connection;
    amqp_channel_t channel;
    uint64_t tag;
    Kind kind;
  };

  void Settle(const Delivery& d, Settlement::Kind kind) {
    absl::MutexLock lock(&mu_);
    settlements_.push_back({d.connection, d.model.empty() ? kDead : kJobs, d.tag, kind});
  }

  // Performs the settlements asked for; false when the connection failed.
  bool SettlePending(Connection& conn) {
    std::vector<Settlement> settle;
    uint64_t current;
    {
      absl::MutexLock lock(&mu_);
      settle.swap(settlements_);
      current = connection_;
    }
    for (const Settlement& s : settle) {
      if (s.connection != current) continue;  // its connection is gone; the broker requeued it
      int rc = AMQP_STATUS_OK;
      switch (s.kind) {
        case Settlement::kAck:
          rc = amqp_basic_ack(conn.state(), s.channel, s.tag, 0);
          break;
        case Settlement::kReject:
          rc = amqp_basic_reject(conn.state(), s.channel, s.tag, 0);
          break;
        case Settlement::kRequeue:
          rc = amqp_basic_reject(conn.state(), s.channel, s.tag, 1);
          break;
      }
      if (rc != AMQP_STATUS_OK) return false;
    }
    return true;
  }

  absl::Status EnsurePublisher() ABSL_EXCLUSIVE_LOCKS_REQUIRED(publish_mu_) {
    if (publisher_) return absl::OkStatus();
    KILN_ASSIGN_OR_RETURN(auto c, Connection::Open(options_.url, 0, {kJobs, kEvents, kPassive}));
    KILN_RETURN_IF_ERROR(
        c->DeclareTopology(kJobs, options_.declare_models, options_.delivery_limit));
    amqp_confirm_select(c->state(), kJobs);
    KILN_RETURN_IF_ERROR(c->Check("enabling publisher confirms"));
    publisher_ = std::move(c);
    next_confirm_tag_ = 1;
    return absl::OkStatus();
  }

  absl::Status Publish(amqp_channel_t channel, const std::string& exchange,
                       const std::string& routing_key, const std::string& body, bool persistent) {
    absl::MutexLock lock(&publish_mu_);
    absl::Status last;
    // One retry on a fresh connection: the old one may have died with a broker restart.
    for (int attempt = 0; attempt < 2; ++attempt) {
      last = EnsurePublisher();
      if (!last.ok()) return last;
      last = PublishOnce(channel, exchange, routing_key, body, persistent);
      if (last.ok()) return last;
      publisher_->MarkBroken();
      publisher_.reset();
    }
    return last;
  }

  absl::Status PublishOnce(amqp_channel_t channel, const std::string& exchange,
                           const std::string& routing_key, const std::string& body, bool persistent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(publish_mu_) {
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = persistent ? 2 : 1;
    const int rc = amqp_basic_publish(publisher_->state(), channel, Bytes(exchange),
                                      Bytes(routing_key), 0, 0, &props, Bytes(body));
    if (rc != AMQP_STATUS_OK) {
      return absl::UnavailableError(StrCat("publishing to the broker: ", amqp_error_string2(rc)));
    }
    if (channel != kJobs) return absl::OkStatus();
    const uint64_t tag = next_confirm_tag_++;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      timeval tv{static_cast<time_t>(left.count() / 1000000),
                 static_cast<suseconds_t>(left.count() % 1000000)};
      amqp_frame_t frame;
      const int w = amqp_simple_wait_frame_noblock(publisher_->state(), &frame, &tv);
      if (w == AMQP_STATUS_TIMEOUT) break;
      if (w != AMQP_STATUS_OK) {
        return absl::UnavailableError(
            StrCat("waiting for the broker's confirm: ", amqp_error_string2(w)));
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          if (ack->delivery_tag == tag || (ack->multiple && ack->delivery_tag >= tag)) {
            return absl::OkStatus();
          }
          break;
        }
        case AMQP_BASIC_NACK_METHOD:
          return absl::UnavailableError("the broker refused the job (publisher nack)");
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
          return absl::UnavailableError("the broker closed the connection while publishing");
        default:
          break;
      }
    }
    return absl::UnavailableError("the broker did not confirm the job within 10 s");
  }

  // Opens the consumer connection and starts every consumer.
  absl::StatusOr<std::unique_ptr<Connection>> OpenConsumer() {
    KILN_ASSIGN_OR_RETURN(auto c, Connection::Open(options_.url, 10, {kJobs, kEvents, kDead}));
    std::vector<std::string> declare = options_.declare_models;
    declare.insert(declare.end(), options_.consume_models.begin(), options_.consume_models.end());
    KILN_RETURN_IF_ERROR(c->DeclareTopology(kJobs, declare, options_.delivery_limit));
    amqp_connection_state_t s = c->state();
    if (!options_.consume_models.empty()) {
      amqp_basic_qos(s, kJobs, 0, static_cast<uint16_t>(std::clamp(options_.prefetch, 1, 65535)),
                     0);
      KILN_RETURN_IF_ERROR(c->Check("setting the prefetch"));
      for (const std::string& model : options_.consume_models) {
        const std::string tag = StrCat("job:", model);
        amqp_basic_consume(s, kJobs, Bytes(JobQueueName(model)), Bytes(tag), 0, 0, 0,
                           amqp_empty_table);
        KILN_RETURN_IF_ERROR(c->Check(StrCat("consuming ", JobQueueName(model))));
      }
    }
    if (!options_.event_patterns.empty()) {
      amqp_queue_declare_ok_t* q =
          amqp_queue_declare(s, kEvents, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
      KILN_RETURN_IF_ERROR(c->Check("declaring an event queue"));
      const std::string queue = ToString(q->queue);
      for (const std::string& pattern : options_.event_patterns) {
        amqp_queue_bind(s, kEvents, Bytes(queue), amqp_cstring_bytes(kEventsExchange),
                        Bytes(pattern), amqp_empty_table);
        KILN_RETURN_IF_ERROR(c->Check("binding the event queue"));
      }
      amqp_basic_consume(s, kEvents, Bytes(queue), amqp_cstring_bytes("events"), 0, 1, 0,
                         amqp_empty_table);
      KILN_RETURN_IF_ERROR(c->Check("consuming events"));
    }
    if (options_.consume_dead_letters) {
      amqp_basic_qos(s, kDead, 0, 16, 0);
      KILN_RETURN_IF_ERROR(c->Check("setting the dead-letter prefetch"));
      amqp_basic_consume(s, kDead, amqp_cstring_bytes(kDeadQueue), amqp_cstring_bytes("dead"), 0, 0,
                         0, amqp_empty_table);
      KILN_RETURN_IF_ERROR(c->Check("consuming kiln.dead"));
    }
    return c;
  }

  bool Stopping() {
    absl::MutexLock lock(&mu_);
    return stop_;
  }

  // Waits up to `d` unless stopping; returns whether stopping.
  bool WaitStop(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&stop_), d);
  }

  void SetHealth(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (s.ok() && !health_.ok())
      log::Info("connected to the broker", {{"host", options_.url.host}});
    if (!s.ok() && (health_.ok() || health_.message() != s.message())) {
      log::Error("the broker is not usable", {{"error", std::string(s.message())}});
    }
    health_ = std::move(s);
  }

  void ConsumeLoop() {
    std::unique_ptr<Connection> conn;
    absl::Duration backoff = absl::Milliseconds(200);
    while (!Stopping()) {
      if (!conn) {
        auto c = OpenConsumer();
        if (!c.ok()) {
          SetHealth(c.status());
          if (WaitStop(backoff)) break;
          backoff = std::min(backoff * 2, absl::Seconds(5));
          continue;
        }
        conn = std::move(*c);
        backoff = absl::Milliseconds(200);
        {
          absl::MutexLock lock(&mu_);
          ++connection_;
        }
        SetHealth(absl::OkStatus());
      }
      if (!ConsumeOnce(*conn)) {
        conn->MarkBroken();
        conn.reset();
        {
          absl::MutexLock lock(&mu_);
          ++connection_;  // the deliveries of the broken connection are no longer live
        }
        SetHealth(absl::UnavailableError("lost the connection to the broker; reconnecting"));
      }
    }
    // Closing the connection returns every unsettled delivery to its queue.
    if (conn) (void)SettlePending(*conn);
    conn.reset();
  }

  // Settles what other threads asked for, then waits briefly for one message. Returns false
  // when the connection failed.
  bool ConsumeOnce(Connection& conn) {
    if (!SettlePending(conn)) return false;
    uint64_t current;
    {
      absl::MutexLock lock(&mu_);
      current = connection_;
    }
    amqp_maybe_release_buffers(conn.state());
    amqp_envelope_t env;
    timeval tv{0, 20000};
    amqp_rpc_reply_t r = amqp_consume_message(conn.state(), &env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
      if (r.library_error == AMQP_STATUS_TIMEOUT) return true;
      if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // A frame other than a delivery: a close (or a server-side cancel) ends this connection.
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(conn.state(), &frame) != AMQP_STATUS_OK) return false;
        if (frame.frame_type == AMQP_FRAME_METHOD &&
            (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
             frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
             frame.payload.method.id == AMQP_BASIC_CANCEL_METHOD)) {
          return false;
        }
        return true;
      }
      return false;
    }
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return false;
    Dispatch(env, current);
    amqp_destroy_envelope(&env);
    return true;
  }

  void Dispatch(const amqp_envelope_t& env, uint64_t connection) {
    const std::string tag = ToString(env.consumer_tag);
    std::string body = ToString(env.message.body);
    if (env.channel == kEvents) {
      if (options_.on_event) options_.on_event(ToString(env.routing_key), body);
      return;
    }
    Delivery d;
    d.tag = env.delivery_tag;
    d.connection = connection;
    d.redelivered = env.redelivered != 0;
    d.body = std::move(body);
    const amqp_basic_properties_t& p = env.message.properties;
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
      for (int i = 0; i < p.headers.num_entries; ++i) {
        if (ToString(p.headers.entries[i].key) == "x-delivery-count") {
          d.delivery_count = IntField(p.headers.entries[i].value);
        }
      }
    }
    if (env.channel == kDead) {
      if (options_.on_dead_letter) options_.on_dead_letter(d.body);
      Ack(d);
      return;
    }
    d.model = tag.substr(4);  // "job:<model>"
    if (options_.on_job) {
      options_.on_job(std::move(d));
    } else {
      Reject(d);
    }
  }

  const BrokerOptions options_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status health_ ABSL_GUARDED_BY(mu_) =
      absl::UnavailableError("not connected to the broker yet");
  uint64_t connection_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Settlement> settlements_ ABSL_GUARDED_BY(mu_);

  absl::Mutex publish_mu_;
  std::unique_ptr<Connection> publisher_ ABSL_GUARDED_BY(publish_mu_);
  uint64_t next_confirm_tag_ ABSL_GUARDED_BY(publish_mu_) = 1;
};

}  // namespace

absl::StatusOr<AmqpUrl> ParseAmqpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "amqp://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return InvalidField("queue", StrCat("'", url, "' is not an amqp:// URL"));
  }
  std::string_view rest = url.substr(kScheme.size());
  AmqpUrl out;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view vhost = rest.substr(slash + 1);
    if (!vhost.empty()) {
      KILN_ASSIGN_OR_RETURN(out.vhost, PercentDecode(vhost));
    }
  }
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    KILN_ASSIGN_OR_RETURN(out.user, PercentDecode(userinfo.substr(0, colon)));
    out.password.clear();
    if (colon != std::string_view::npos) {
      KILN_ASSIGN_OR_RETURN(out.password, PercentDecode(userinfo.substr(colon + 1)));
    }
  }
  const size_t colon = authority.rfind(':');
  std::string_view host = authority.substr(0, colon);
  if (colon != std::string_view::npos) {
    std::string_view port = authority.substr(colon + 1);
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535) {
      return InvalidField("queue", StrCat("'", url, "': the port must be a number in 1..65535"));
    }
    out.port = p;
  }
  if (host.empty()) return InvalidField("queue", StrCat("'", url, "' names no host"));
  out.host = std::string(host);
  return out;
}

std::string JobQueueName(std::string_view model) { return StrCat("kiln.jobs.", model); }

absl::StatusOr<std::unique_ptr<Broker>> Broker::Start(BrokerOptions options) {
  auto broker = std::make_unique<BrokerImpl>(std::move(options));
  broker->StartThread();
  return broker;
}

}  // namespace kiln::queue::amqp
