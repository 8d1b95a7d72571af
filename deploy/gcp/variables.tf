variable "project" {
  description = "GCP project id."
  type        = string
}

variable "region" {
  description = "Region of the load balancer's backend and the instance group."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the GPU instances (the GPU type must be offered there)."
  type        = string
  default     = "us-central1-a"
}

variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "kiln"
}

variable "machine_type" {
  description = "Machine type of each worker VM."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  description = "Accelerator attached to each VM (one per VM: one kiln worker per GPU)."
  type        = string
  default     = "nvidia-l4"
}

variable "spot" {
  description = "Use Spot VMs. A preempted worker checkpoints its jobs at a step boundary (the preemption watch) and another resumes them."
  type        = bool
  default     = true
}

variable "image" {
  description = "Debian 12 boot image with the NVIDIA driver and gcloud (kiln is built on Debian 12); the startup script installs kiln from kiln_package_url."
  type        = string
}

variable "kiln_package_url" {
  description = "gs:// or https:// URL of a tarball with bin/kiln and models/ (built with `make build` on Debian 12)."
  type        = string
}

variable "queue_secret" {
  description = "Secret Manager secret (name) holding the amqp:// URL of the broker."
  type        = string
}

variable "store_url" {
  description = "Store URL, e.g. s3://bucket?endpoint=https://storage.googleapis.com (GCS through HMAC keys)."
  type        = string
}

variable "store_hmac_secret" {
  description = "Secret Manager secret (name) holding \"ACCESS_KEY_ID:SECRET\" of a GCS HMAC key."
  type        = string
}

variable "api_keys_secret" {
  description = "Secret Manager secret (name) holding the API keys YAML (docs/operations.md, Security); written to /etc/kiln/api-keys.yaml."
  type        = string
}

variable "file_url_secret" {
  description = "Secret Manager secret (name) holding the key that signs result URLs (any long random string), the same on every VM."
  type        = string
}

variable "grace_seconds" {
  description = "Seconds a stopping worker keeps running jobs before it checkpoints the rest. Spot VMs get 30 s in all."
  type        = number
  default     = 20
}

variable "min_replicas" {
  description = "Fewest VMs. A GCE autoscaler on a custom metric cannot go below 1; 0 needs a scheduled or external scaler."
  type        = number
  default     = 1
}

variable "max_replicas" {
  description = "Most VMs."
  type        = number
  default     = 8
}

variable "target_backlog_seconds" {
  description = "Device-seconds of queued and running work per VM (the same policy as --autoscale-target-seconds)."
  type        = number
  default     = 60
}
