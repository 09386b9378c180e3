# A managed image with the payload's environment baked in: Azure's Ubuntu HPC 22.04 (NVIDIA driver, CUDA) plus a
# venv at /opt/orchestrate/venv with Keras, TensorFlow and the payload's other requirements at the project's pins,
# and keras_bench. Runs on it then need no install: see docs/images.md.
#   az login
#   packer init images/packer/azure.pkr.hcl
#   packer build -var subscription_id=… -var resource_group=… images/packer/azure.pkr.hcl
packer {
  required_version = ">= 1.10.0"
  required_plugins {
    azure = {
      version = "2.5.2"
      source  = "github.com/hashicorp/azure"
    }
  }
}

variable "subscription_id" {
  description = "Azure subscription to build in and keep the image in."
  type        = string
}

variable "resource_group" {
  description = "Existing resource group the managed image is written to (the build machine gets a group of its own)."
  type        = string
}

variable "use_azure_cli_auth" {
  description = "Authenticate as the `az login` user; false to use the build host's managed identity."
  type        = bool
  default     = true
}

variable "location" {
  description = "Azure region to build in; the image is kept there."
  type        = string
  default     = "eastus"
}

variable "vm_size" {
  description = "Size of the build machine; an N-series size, so that nvidia-smi and TensorFlow see a GPU."
  type        = string
  default     = "Standard_NC4as_T4_v3"
}

variable "check_gpu" {
  description = "Fail the build unless nvidia-smi and TensorFlow see a GPU; false for a CPU vm_size."
  type        = bool
  default     = true
}

variable "source_image" {
  description = "Marketplace image to start from, as publisher:offer:sku:version (Ubuntu HPC 22.04 has the driver)."
  type        = string
  default     = "microsoft-dsvm:ubuntu-hpc:2204:latest"
}

variable "image_name_prefix" {
  description = "Start of the managed image's name; a UTC timestamp is appended."
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

variable "os_disk_size_gb" {
  description = "OS disk size in GiB: at least the source image's, plus ~10 GiB for the venv."
  type        = number
  default     = 128
}

locals {
  timestamp   = formatdate("YYYYMMDD-hhmmss", timestamp())
  staging     = "/tmp/orchestrate-image"
  marketplace = split(":", var.source_image)
}

source "azure-arm" "payload" {
  subscription_id    = var.subscription_id
  use_azure_cli_auth = var.use_azure_cli_auth
  location           = var.location
  vm_size            = var.vm_size

  os_type         = "Linux"
  image_publisher = local.marketplace[0]
  image_offer     = local.marketplace[1]
  image_sku       = local.marketplace[2]
  image_version   = local.marketplace[3]
  os_disk_size_gb = var.os_disk_size_gb
  # Managed disks and the image are encrypted at rest by Azure (platform-managed keys) without a setting here.

  managed_image_name                = "${var.image_name_prefix}-${local.timestamp}"
  managed_image_resource_group_name = var.resource_group

  azure_tags = {
    orchestrate-keras      = var.keras_version
    orchestrate-tensorflow = var.tensorflow_version
    orchestrate-python     = "/opt/orchestrate/venv/bin/python"
  }
}

build {
  sources = ["source.azure-arm.payload"]

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

  # Generalise the VM (Azure's documented last step): removes the build user, its keys and the machine's
  # identity, so that VMs made from the image provision their own admin user (azureuser).
  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; {{ .Vars }} sudo -E sh '{{ .Path }}'"
    inline = [
      "cloud-init clean --logs",
      "/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync",
    ]
    inline_shebang = "/bin/sh -x"
    skip_clean     = true
  }
}
