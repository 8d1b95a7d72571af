// The JSON form of a Job, as it is kept in the store (jobs/{id}/job.json) so that any gateway
// can answer for any job in the distributed mode. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "queue/job.h"

namespace kiln::queue {

// The store key of a job's record.
std::string JobRecordKey(std::string_view job_id);

std::string EncodeJobRecord(const Job& job);
// InvalidArgument naming the field when `text` is not a job record.
absl::StatusOr<Job> DecodeJobRecord(std::string_view text);

}  // namespace kiln::queue
