# Kiln on GCP: one MIG of GPU VMs (Spot by default), each running a gateway (behind a global
# HTTP load balancer) and one worker for its GPU, over a shared RabbitMQ and GCS. The MIG scales
# on the backlog in device-seconds that the gateways report (GET /v1/autoscale), exported to
# Cloud Monitoring by each VM. See deploy/README.md.

locals {
  gateway_port = 8080
  worker_port  = 9090
}

resource "google_service_account" "kiln" {
  account_id   = "${var.name}-vm"
  display_name = "Kiln VMs"
}

resource "google_project_iam_member" "kiln" {
  for_each = toset([
    "roles/monitoring.metricWriter",
    "roles/logging.logWriter",
    "roles/secretmanager.secretAccessor",
    "roles/storage.objectViewer",
  ])
  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.kiln.email}"
}

resource "google_compute_instance_template" "kiln" {
  name_prefix  = "${var.name}-"
  machine_type = var.machine_type
  tags         = ["${var.name}-vm"]

  disk {
    source_image = var.image
    auto_delete  = true
    boot         = true
    disk_size_gb = 100
    disk_type    = "pd-balanced"
  }

  guest_accelerator {
    type  = var.gpu_type
    count = 1
  }

  scheduling {
    provisioning_model          = var.spot ? "SPOT" : "STANDARD"
    preemptible                 = var.spot
    automatic_restart           = var.spot ? false : true
    on_host_maintenance         = "TERMINATE"
    instance_termination_action = var.spot ? "DELETE" : null
  }

  network_interface {
    network = "default"
    access_config {}
  }

  service_account {
    email  = google_service_account.kiln.email
    scopes = ["cloud-platform"]
  }

  metadata = {
    startup-script = templatefile("${path.module}/startup.sh.tftpl", {
      package_url       = var.kiln_package_url
      queue_secret      = var.queue_secret
      store_url         = var.store_url
      store_hmac_secret = var.store_hmac_secret
      api_keys_secret   = var.api_keys_secret
      file_url_secret   = var.file_url_secret
      grace_seconds     = var.grace_seconds
      gateway_port      = local.gateway_port
      worker_port       = local.worker_port
    })
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_health_check" "kiln" {
  name                = "${var.name}-readyz"
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 3

  http_health_check {
    port         = local.gateway_port
    request_path = "/readyz"
  }
}

resource "google_compute_instance_group_manager" "kiln" {
  name               = "${var.name}-mig"
  zone               = var.zone
  base_instance_name = var.name

  version {
    instance_template = google_compute_instance_template.kiln.id
  }

  named_port {
    name = "http"
    port = local.gateway_port
  }

  # A VM whose gateway stays unready is replaced; the first check waits for model loading.
  auto_healing_policies {
    health_check      = google_compute_health_check.kiln.id
    initial_delay_sec = 600
  }

  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    max_surge_fixed       = 1
    max_unavailable_fixed = 0
  }
}

resource "google_compute_autoscaler" "kiln" {
  name   = "${var.name}-autoscaler"
  zone   = var.zone
  target = google_compute_instance_group_manager.kiln.id

  autoscaling_policy {
    min_replicas    = var.min_replicas
    max_replicas    = var.max_replicas
    cooldown_period = 300

    # A per-group metric (resource "global"): the group gets backlog / target VMs.
    metric {
      name                       = "custom.googleapis.com/kiln/backlog_seconds"
      filter                     = "resource.type = \"global\""
      single_instance_assignment = var.target_backlog_seconds
    }

    # Scale in slowly: a VM taken away checkpoints its jobs, which costs their steps so far.
    scale_in_control {
      time_window_sec = 600
      max_scaled_in_replicas {
        fixed = 1
      }
    }
  }
}

resource "google_compute_firewall" "health_checks" {
  name          = "${var.name}-health-checks"
  network       = "default"
  source_ranges = ["130.211.0.0/22", "35.191.0.0/16"]
  target_tags   = ["${var.name}-vm"]

  allow {
    protocol = "tcp"
    ports    = [tostring(local.gateway_port)]
  }
}

resource "google_compute_backend_service" "kiln" {
  name                  = "${var.name}-backend"
  protocol              = "HTTP"
  port_name             = "http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  # Long enough for sync generations; async jobs answer at once.
  timeout_sec   = 600
  health_checks = [google_compute_health_check.kiln.id]

  backend {
    group           = google_compute_instance_group_manager.kiln.instance_group
    balancing_mode  = "UTILIZATION"
    capacity_scaler = 1.0
  }
}

resource "google_compute_url_map" "kiln" {
  name            = "${var.name}-lb"
  default_service = google_compute_backend_service.kiln.id
}

resource "google_compute_target_http_proxy" "kiln" {
  name    = "${var.name}-proxy"
  url_map = google_compute_url_map.kiln.id
}

resource "google_compute_global_forwarding_rule" "kiln" {
  name                  = "${var.name}-http"
  target                = google_compute_target_http_proxy.kiln.id
  port_range            = "80"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
