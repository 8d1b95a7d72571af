#include "queue/job_record.h"

#include "core/status_util.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace kiln::queue {

std::string JobRecordKey(std::string_view job_id) { return StrCat("jobs/", job_id, "/job.json"); }

std::string EncodeJobRecord(const Job& job) {
  const NewJob& s = job.spec;
  nlohmann::json j = {{"version", 1},
                      {"id", s.id},
                      {"model", s.model},
                      {"request", s.request},
                      {"class", PriorityClassName(s.klass)},
                      {"priority", s.priority},
                      {"tenant", s.tenant},
                      {"cost", s.cost},
                      {"deadline_ms", s.deadline_ms},
                      {"webhook", s.webhook},
                      {"idempotency_key", s.idempotency_key},
                      {"batch_id", s.batch_id},
                      {"max_attempts", s.max_attempts},
                      {"traceparent", s.traceparent},
                      {"seq", job.seq},
                      {"state", JobStateName(job.state)},
                      {"attempts", job.attempts},
                      {"created_ms", job.created_ms},
                      {"started_ms", job.started_ms},
                      {"finished_ms", job.finished_ms},
                      {"worker", job.worker},
                      {"lease_until_ms", job.lease_until_ms},
                      {"step", job.step},
                      {"num_steps", job.num_steps},
                      {"result_keys", job.result_keys},
                      {"error", job.error},
                      {"error_code", job.error_code},
                      {"cancel_requested", job.cancel_requested},
                      {"webhook_status", job.webhook_status}};
  return j.dump();
}

absl::StatusOr<Job> DecodeJobRecord(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return InvalidField("job", "the job record is not a JSON object");
  Job job;
  NewJob& s = job.spec;
  try {
    if (j.at("version").get<int>() != 1) return InvalidField("version", "unknown record version");
    s.id = j.at("id").get<std::string>();
    s.model = j.at("model").get<std::string>();
    s.request = j.at("request").get<std::string>();
    const std::string klass = j.at("class").get<std::string>();
    bool known = false;
    for (PriorityClass c :
         {PriorityClass::kInteractive, PriorityClass::kAsync, PriorityClass::kBatch}) {
      if (PriorityClassName(c) == klass) {
        s.klass = c;
        known = true;
      }
    }
    if (!known) return InvalidField("class", StrCat("unknown class '", klass, "'"));
    s.priority = j.at("priority").get<int>();
    s.tenant = j.at("tenant").get<std::string>();
    s.cost = j.at("cost").get<double>();
    s.deadline_ms = j.at("deadline_ms").get<int64_t>();
    s.webhook = j.at("webhook").get<std::string>();
    s.idempotency_key = j.at("idempotency_key").get<std::string>();
    s.batch_id = j.at("batch_id").get<std::string>();
    s.max_attempts = j.at("max_attempts").get<int>();
    s.traceparent = j.at("traceparent").get<std::string>();
    job.seq = j.at("seq").get<int64_t>();
    const std::string state = j.at("state").get<std::string>();
    auto parsed = ParseJobState(state);
    if (!parsed) return InvalidField("state", StrCat("unknown state '", state, "'"));
    job.state = *parsed;
    job.attempts = j.at("attempts").get<int>();
    job.created_ms = j.at("created_ms").get<int64_t>();
    job.started_ms = j.at("started_ms").get<int64_t>();
    job.finished_ms = j.at("finished_ms").get<int64_t>();
    job.worker = j.at("worker").get<std::string>();
    job.lease_until_ms = j.at("lease_until_ms").get<int64_t>();
    job.step = j.at("step").get<int>();
    job.num_steps = j.at("num_steps").get<int>();
    job.result_keys = j.at("result_keys").get<std::vector<std::string>>();
    job.error = j.at("error").get<std::string>();
    job.error_code = j.at("error_code").get<std::string>();
    job.cancel_requested = j.at("cancel_requested").get<bool>();
    job.webhook_status = j.at("webhook_status").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return InvalidField("job", StrCat("malformed job record: ", e.what()));
  }
  if (s.id.empty()) return InvalidField("id", "the job record has no id");
  return job;
}

}  // namespace kiln::queue
