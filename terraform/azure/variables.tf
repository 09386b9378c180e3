variable "subscription_id" {
  description = "Azure subscription of the fleet; null reads ARM_SUBSCRIPTION_ID from the environment."
  type        = string
  default     = null
  nullable    = true
}

variable "location" {
  description = "Azure region of the fleet, e.g. eastus."
  type        = string
}

variable "size" {
  description = "VM size of every box, e.g. Standard_NC4as_T4_v3. Set gpu_model and gpu_count when it is not in the module's table of known GPU sizes."
  type        = string
  default     = "Standard_NC4as_T4_v3"
}

variable "image" {
  description = "Marketplace image of the boxes as publisher:offer:sku:version; the default (Ubuntu HPC 22.04) has the NVIDIA driver and CUDA."
  type        = string
  default     = "microsoft-dsvm:ubuntu-hpc:2204:latest"

  validation {
    condition     = length(split(":", var.image)) == 4 && alltrue([for part in split(":", var.image) : part != ""])
    error_message = "image must be publisher:offer:sku:version, e.g. microsoft-dsvm:ubuntu-hpc:2204:latest."
  }
}

variable "instance_count" {
  description = "How many boxes (1 or more; `terraform destroy` removes the whole fleet)."
  type        = number
  default     = 1

  validation {
    condition     = var.instance_count >= 1 && floor(var.instance_count) == var.instance_count
    error_message = "instance_count must be a whole number, 1 or more."
  }
}

variable "spot" {
  description = "Run the boxes as Spot VMs, deallocated (disk and host key kept) when Azure evicts them."
  type        = bool
  default     = false
}

variable "max_bid_price" {
  description = "With spot: the most to pay per hour in USD; -1 pays up to the pay-as-you-go price and is never evicted for price."
  type        = number
  default     = -1
}

variable "ssh_public_key" {
  description = "The public half of the client key Orchestrate logs in with (OpenSSH line); installed for azureuser."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key must be an OpenSSH ssh-ed25519 or ssh-rsa public key line, e.g. the content of ~/.ssh/id_ed25519.pub."
  }
}

variable "allowed_cidr" {
  description = "The only network that may reach the boxes' SSH port, e.g. 203.0.113.7/32. Never 0.0.0.0/0, ::/0, * or Internet."
  type        = string

  validation {
    condition     = can(cidrhost(var.allowed_cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], var.allowed_cidr) && try(tonumber(split("/", var.allowed_cidr)[1]) > 0, false)
    error_message = "allowed_cidr must be a CIDR narrower than the whole Internet (not 0.0.0.0/0 or ::/0), e.g. 203.0.113.7/32."
  }
}

variable "encryption_at_host" {
  description = "Encrypt the VMs' temporary disk and caches at the host too (the OS disk is always encrypted at rest); needs the subscription feature Microsoft.Compute/EncryptionAtHost."
  type        = bool
  default     = true
}

variable "name_prefix" {
  description = "Prefix of every resource's name; box i is named <name_prefix>-<i> (also its name in Orchestrate's inventory)."
  type        = string
  default     = "orchestrate-fleet"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,39}$", var.name_prefix))
    error_message = "name_prefix must start with a letter or digit and hold only letters, digits and '-' (40 at most): it is also the VMs' host name."
  }
}

variable "tags" {
  description = "Tags put on every resource, beside the module's own (orchestrate-fleet, orchestrate-host-key)."
  type        = map(string)
  default     = {}
}

variable "os_disk_gb" {
  description = "Size of each box's Premium SSD OS disk in GiB."
  type        = number
  default     = 256
}

variable "price_per_hour" {
  description = "What one box costs per hour in USD, passed through to Orchestrate's inventory for its cost reports; null when unknown."
  type        = number
  default     = null
  nullable    = true
}

variable "gpu_model" {
  description = "GPU model of each box as Orchestrate reports it (e.g. T4); null takes it from the module's table for size."
  type        = string
  default     = null
  nullable    = true
}

variable "gpu_count" {
  description = "GPUs per box; null takes it from the module's table for size."
  type        = number
  default     = null
  nullable    = true
}
