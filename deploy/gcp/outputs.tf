output "address" {
  description = "The load balancer's IP address (HTTP on port 80)."
  value       = google_compute_global_forwarding_rule.kiln.ip_address
}

output "instance_group" {
  description = "The managed instance group of GPU VMs."
  value       = google_compute_instance_group_manager.kiln.instance_group
}
