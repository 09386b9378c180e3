# N long-lived GPU boxes for Orchestrate's rented provider, made the way orchestrator/providers/aws/ makes a run's:
# a security group whose only ingress is TCP 22 from var.allowed_cidr (plus traffic between the boxes), an ed25519
# host key per box installed through cloud-init's ssh_keys and pinned in the outputs, an encrypted root volume and
# IMDSv2 only. `terraform output -json` feeds `orchestrate inventory import-terraform` (see docs/terraform.md).

locals {
  # GPUs of the instance types benchmarks usually run on; var.gpu_model / var.gpu_count win over this table.
  known_gpus = {
    "g4dn.xlarge"   = { model = "T4", count = 1 }
    "g4dn.2xlarge"  = { model = "T4", count = 1 }
    "g4dn.12xlarge" = { model = "T4", count = 4 }
    "g5.xlarge"     = { model = "A10G", count = 1 }
    "g5.2xlarge"    = { model = "A10G", count = 1 }
    "g5.12xlarge"   = { model = "A10G", count = 4 }
    "g5.48xlarge"   = { model = "A10G", count = 8 }
    "g6.xlarge"     = { model = "L4", count = 1 }
    "g6.12xlarge"   = { model = "L4", count = 4 }
    "g6e.xlarge"    = { model = "L40S", count = 1 }
    "p3.2xlarge"    = { model = "V100", count = 1 }
    "p3.8xlarge"    = { model = "V100", count = 4 }
    "p4d.24xlarge"  = { model = "A100", count = 8 }
    "p5.48xlarge"   = { model = "H100", count = 8 }
  }
  gpu_model = var.gpu_model != null ? var.gpu_model : try(local.known_gpus[var.instance_type].model, null)
  gpu_count = var.gpu_count != null ? var.gpu_count : try(local.known_gpus[var.instance_type].count, 1)

  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.dlami[0].insecure_value
  login_user = "ubuntu" # the Deep Learning AMI's (Ubuntu 22.04)
  ssh_ipv6   = strcontains(var.allowed_cidr, ":")
  tags       = merge(var.tags, { "orchestrate-fleet" = var.name_prefix })
  names      = [for i in range(var.instance_count) : "${var.name_prefix}-${i}"]

  # The same cloud-config every machine Orchestrate launches boots with (its ${user} and ${payload_dir} filled in
  # as orchestrator.providers.cloudinit.user_data fills them): the image's host keys deleted, none generated, only
  # the pinned one installed; the payload's directory made; the GPU driver checked.
  cloud_config = yamldecode(templatefile("${path.module}/../../images/cloud-init/user-data.yaml", {
    user        = local.login_user
    payload_dir = "/home/${local.login_user}/orchestrate"
  }))
}

data "aws_ssm_parameter" "dlami" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
}

data "aws_vpc" "default" {
  default = true
}

resource "aws_key_pair" "client" {
  key_name   = var.name_prefix
  public_key = var.ssh_public_key
  tags       = local.tags
}

# The boxes' SSH host keys. Their private halves live in the Terraform state: treat the state as a secret.
resource "tls_private_key" "host" {
  count     = var.instance_count
  algorithm = "ED25519"
}

resource "aws_security_group" "fleet" {
  name        = var.name_prefix
  description = "Orchestrate fleet ${var.name_prefix}: SSH from ${var.allowed_cidr} only, all traffic between its boxes"
  vpc_id      = data.aws_vpc.default.id
  tags        = merge(local.tags, { Name = var.name_prefix })
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.fleet.id
  description       = "SSH from the allowed network"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = local.ssh_ipv6 ? null : var.allowed_cidr
  cidr_ipv6         = local.ssh_ipv6 ? var.allowed_cidr : null
  tags              = local.tags
}

# Multi-node training reaches the other boxes on their private addresses (TF_CONFIG); nobody outside the group gains
# anything from this rule.
resource "aws_vpc_security_group_ingress_rule" "intra_group" {
  security_group_id            = aws_security_group.fleet.id
  description                  = "All traffic between the boxes of the fleet"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.fleet.id
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "intra_group" {
  security_group_id            = aws_security_group.fleet.id
  description                  = "All traffic between the boxes of the fleet"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.fleet.id
  tags                         = local.tags
}

# Outbound, only what a run needs: HTTPS (pip, the NVIDIA and Docker repositories, Keras datasets) and HTTP (Ubuntu's
# apt mirrors). DNS and NTP go to the VPC's Amazon resolver and time service, which security groups do not filter.
resource "aws_vpc_security_group_egress_rule" "web" {
  for_each          = toset(["80", "443"])
  security_group_id = aws_security_group.fleet.id
  description       = "Outbound TCP ${each.key} for packages and datasets"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

resource "aws_instance" "box" {
  #checkov:skip=CKV_AWS_88:the boxes are reached directly over SSH from allowed_cidr, so each needs a public address
  #checkov:skip=CKV2_AWS_41:the boxes call no AWS API, so they get no IAM role (no credentials on the box to leak)
  count                       = var.instance_count
  ami                         = local.ami_id
  instance_type               = var.instance_type
  key_name                    = aws_key_pair.client.key_name
  vpc_security_group_ids      = [aws_security_group.fleet.id]
  associate_public_ip_address = true
  monitoring                  = true
  ebs_optimized               = true
  user_data_replace_on_change = true
  user_data = "#cloud-config\n${yamlencode(merge(local.cloud_config, {
    ssh_keys = {
      ed25519_private = tls_private_key.host[count.index].private_key_openssh
      ed25519_public  = trimspace(tls_private_key.host[count.index].public_key_openssh)
    }
  }))}"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = local.names[count.index] })
  }

  # One-time Spot, terminated when EC2 reclaims the capacity: `terraform apply` then makes the box again, with the
  # same pinned host key (a new public address: import the outputs again). A persistent request would survive
  # `terraform destroy` and launch boxes nobody tracks (hashicorp/terraform-provider-aws#38142).
  dynamic "instance_market_options" {
    for_each = var.spot ? [1] : []
    content {
      market_type = "spot"
      spot_options {
        spot_instance_type             = "one-time"
        instance_interruption_behavior = "terminate"
      }
    }
  }

  tags = merge(local.tags, {
    Name                   = local.names[count.index]
    "orchestrate-host-key" = trimspace(tls_private_key.host[count.index].public_key_openssh)
  })
}
