# An AMI with the payload's environment baked in: the Deep Learning Base AMI (NVIDIA driver) plus a venv at
# /opt/orchestrate/venv with Keras, TensorFlow and the payload's other requirements at the project's pins, and
# keras_bench. Runs on it then need no install: see docs/images.md.
#   packer init images/packer/aws.pkr.hcl
#   packer build -var region=us-east-1 images/packer/aws.pkr.hcl
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      version = "1.8.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  description = "AWS region to build in; the AMI is registered there (copy it to others with ami_regions)."
  type        = string
  default     = "us-east-1"
}

variable "ami_regions" {
  description = "Further regions to copy the finished AMI to."
  type        = list(string)
  default     = []
}

variable "instance_type" {
  description = "Instance type of the build machine; a GPU type, so that nvidia-smi and TensorFlow see a GPU."
  type        = string
  default     = "g5.xlarge"
}

variable "check_gpu" {
  description = "Fail the build unless nvidia-smi and TensorFlow see a GPU; false for a CPU instance_type."
  type        = bool
  default     = true
}

variable "source_ami_parameter" {
  description = "Public SSM parameter naming the source AMI: the Deep Learning Base OSS NVIDIA driver AMI."
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
}

variable "image_name_prefix" {
  description = "Start of the AMI's name; a UTC timestamp is appended."
  type        = string
  default     = "orchestrate-payload"
}

variable "keras_version" {
  description = "Keras version to install (the project's pin; the payload extra's floor is 3.5)."
  type        = string
  default     = "3.15.1"
}

variable "tensorflow_version" {
  description = "TensorFlow version to install, with its CUDA libraries (tensorflow[and-cuda])."
  type        = string
  default     = "2.21.0"
}

variable "python" {
  description = "Interpreter that makes the venv; installed with apt when absent (Ubuntu 22.04's python3 is 3.10)."
  type        = string
  default     = "python3.11"
}

variable "volume_size_gb" {
  description = "Root volume size in GiB: at least the source AMI's, plus ~10 GiB for the venv."
  type        = number
  default     = 100
}

variable "kms_key_id" {
  description = "KMS key that encrypts the AMI's snapshots; empty for the account's default EBS key."
  type        = string
  default     = ""
}

locals {
  timestamp = formatdate("YYYYMMDD-hhmmss", timestamp())
  staging   = "/tmp/orchestrate-image"
}

data "amazon-parameterstore" "source_ami" {
  name   = var.source_ami_parameter
  region = var.region
}

source "amazon-ebs" "payload" {
  region        = var.region
  ami_regions   = var.ami_regions
  instance_type = var.instance_type
  source_ami    = data.amazon-parameterstore.source_ami.value
  ssh_username  = "ubuntu"
  ami_name      = "${var.image_name_prefix}-${local.timestamp}"

  ami_description = "Orchestrate payload: keras ${var.keras_version}, tensorflow ${var.tensorflow_version}, venv /opt/orchestrate/venv"

  # SSH to the build machine from this computer's address only.
  temporary_security_group_source_public_ip = true

  # IMDSv2 only, on the build machine and on every instance launched from the AMI.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  # Encrypted root volume while building, and encrypted snapshots behind the AMI.
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size_gb
    volume_type           = "gp3"
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }
  encrypt_boot = true
  kms_key_id   = var.kms_key_id

  tags = {
    Name                     = "${var.image_name_prefix}-${local.timestamp}"
    "orchestrate:keras"      = var.keras_version
    "orchestrate:tensorflow" = var.tensorflow_version
    "orchestrate:python"     = "/opt/orchestrate/venv/bin/python"
  }
  run_tags = {
    Name = "packer-${var.image_name_prefix}"
  }
}

build {
  sources = ["source.amazon-ebs.payload"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.staging}"]
  }

  provisioner "file" {
    source      = "${path.root}/../requirements-payload.txt"
    destination = "${local.staging}/requirements-payload.txt"
  }

  # A directory without a trailing slash: uploaded as staging/keras_bench.
  provisioner "file" {
    source      = "${path.root}/../../benchmarks/keras_bench"
    destination = local.staging
  }

  provisioner "shell" {
    script = "${path.root}/scripts/install-payload.sh"
    environment_vars = [
      "KERAS_VERSION=${var.keras_version}",
      "TENSORFLOW_VERSION=${var.tensorflow_version}",
      "PYTHON=${var.python}",
      "CHECK_GPU=${var.check_gpu}",
      "STAGING=${local.staging}",
    ]
  }

  # Leave nothing of the build in the image: Packer's temporary key, cloud-init's record of this instance (so the
  # next boot runs the run's user-data afresh), shell history.
  provisioner "shell" {
    inline = [
      "sudo cloud-init clean --logs",
      "rm -f ~/.ssh/authorized_keys ~/.bash_history",
    ]
  }
}
