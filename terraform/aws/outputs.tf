# The one output `orchestrate inventory import-terraform` reads: keep its attributes in step with
# tests/data/terraform/output.json and docs/terraform.md.
output "hosts" {
  description = "The fleet's boxes as Orchestrate's inventory needs them: where to reach each one and its pinned host key."
  value = tolist([for i, box in aws_instance.box : {
    name            = local.names[i]
    host            = box.public_ip
    private_address = box.private_ip
    port            = 22
    user            = local.login_user
    host_key        = trimspace(tls_private_key.host[i].public_key_openssh)
    gpu_model       = local.gpu_model
    gpu_count       = local.gpu_count
    price_per_hour  = var.price_per_hour
  }])
}
