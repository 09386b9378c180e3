variable "region" {
  description = "AWS region of the fleet, e.g. us-east-1."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type of every box, e.g. g5.xlarge. Set gpu_model and gpu_count when it is not in the module's table of known GPU types."
  type        = string
  default     = "g5.xlarge"
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
  description = "Run the boxes as one-time Spot instances: EC2 may terminate them; `terraform apply` makes them again (same host keys, new addresses)."
  type        = bool
  default     = false
}

variable "ssh_public_key" {
  description = "The public half of the client key Orchestrate logs in with (`ssh-ed25519 AAAA…`); becomes the EC2 key pair."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key must be an OpenSSH public key line, e.g. the content of ~/.ssh/id_ed25519.pub."
  }
}

variable "allowed_cidr" {
  description = "The only network that may reach the boxes' SSH port, e.g. 203.0.113.7/32. Never 0.0.0.0/0 or ::/0."
  type        = string

  validation {
    condition     = can(cidrhost(var.allowed_cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], var.allowed_cidr) && try(tonumber(split("/", var.allowed_cidr)[1]) > 0, false)
    error_message = "allowed_cidr must be a CIDR narrower than the whole Internet (not 0.0.0.0/0 or ::/0), e.g. 203.0.113.7/32."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource's name; box i is named <name_prefix>-<i> (also its name in Orchestrate's inventory)."
  type        = string
  default     = "orchestrate-fleet"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$", var.name_prefix))
    error_message = "name_prefix must start with a letter or digit and hold only letters, digits, '_', '.' and '-' (40 at most)."
  }
}

variable "tags" {
  description = "Tags put on every resource, beside the module's own (Name, orchestrate-fleet, orchestrate-host-key)."
  type        = map(string)
  default     = {}
}

variable "ami_id" {
  description = "AMI of the boxes; null means the latest Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04), read from its public SSM parameter. Its login user must be ubuntu."
  type        = string
  default     = null
  nullable    = true
}

variable "root_volume_gb" {
  description = "Size of each box's encrypted gp3 root volume in GiB (the Deep Learning AMI needs 75 or more)."
  type        = number
  default     = 200
}

variable "price_per_hour" {
  description = "What one box costs per hour in USD, passed through to Orchestrate's inventory for its cost reports; null when unknown."
  type        = number
  default     = null
  nullable    = true
}

variable "gpu_model" {
  description = "GPU model of each box as Orchestrate reports it (e.g. A10G); null takes it from the module's table for instance_type."
  type        = string
  default     = null
  nullable    = true
}

variable "gpu_count" {
  description = "GPUs per box; null takes it from the module's table for instance_type."
  type        = number
  default     = null
  nullable    = true
}
