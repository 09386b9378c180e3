# N long-lived GPU boxes for Orchestrate's rented provider, made the way orchestrator/providers/azure/ makes a run's:
# one resource group, a virtual network whose subnet's network security group has one inbound allow rule (TCP 22
# from var.allowed_cidr), a Standard static public IP and a NIC per box, and Linux VMs with the client key only
# (password login off) and an ed25519 host key installed through cloud-init's ssh_keys and pinned in the outputs.
# `terraform output -json` feeds `orchestrate inventory import-terraform` (see docs/terraform.md).

locals {
  # GPUs of the sizes benchmarks usually run on; var.gpu_model / var.gpu_count win over this table.
  known_gpus = {
    "Standard_NC4as_T4_v3"     = { model = "T4", count = 1 }
    "Standard_NC8as_T4_v3"     = { model = "T4", count = 1 }
    "Standard_NC16as_T4_v3"    = { model = "T4", count = 1 }
    "Standard_NC64as_T4_v3"    = { model = "T4", count = 4 }
    "Standard_NC6s_v3"         = { model = "V100", count = 1 }
    "Standard_NC24s_v3"        = { model = "V100", count = 4 }
    "Standard_NC24ads_A100_v4" = { model = "A100", count = 1 }
    "Standard_NC48ads_A100_v4" = { model = "A100", count = 2 }
    "Standard_NC96ads_A100_v4" = { model = "A100", count = 4 }
    "Standard_ND96asr_v4"      = { model = "A100", count = 8 }
    "Standard_NC40ads_H100_v5" = { model = "H100", count = 1 }
    "Standard_ND96isr_H100_v5" = { model = "H100", count = 8 }
  }
  gpu_model = var.gpu_model != null ? var.gpu_model : try(local.known_gpus[var.size].model, null)
  gpu_count = var.gpu_count != null ? var.gpu_count : try(local.known_gpus[var.size].count, 1)

  login_user = "azureuser"
  image      = zipmap(["publisher", "offer", "sku", "version"], split(":", var.image))
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

resource "azurerm_resource_group" "fleet" {
  name     = var.name_prefix
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "fleet" {
  name                = "${var.name_prefix}-vnet"
  location            = azurerm_resource_group.fleet.location
  resource_group_name = azurerm_resource_group.fleet.name
  address_space       = ["10.0.0.0/16"]
  tags                = local.tags
}

resource "azurerm_subnet" "fleet" {
  name                 = "default"
  resource_group_name  = azurerm_resource_group.fleet.name
  virtual_network_name = azurerm_virtual_network.fleet.name
  address_prefixes     = ["10.0.0.0/24"]
}

# One inbound allow rule. Azure's default rules then allow traffic within the virtual network (the boxes reach each
# other's private addresses for multi-node training), deny all other inbound traffic, and allow outbound traffic
# (pip, apt and datasets need it).
resource "azurerm_network_security_group" "fleet" {
  name                = "${var.name_prefix}-nsg"
  location            = azurerm_resource_group.fleet.location
  resource_group_name = azurerm_resource_group.fleet.name
  tags                = local.tags

  security_rule {
    name                       = "ssh-from-allowed-cidr"
    description                = "SSH from the allowed network only"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = var.allowed_cidr
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "22"
  }
}

resource "azurerm_subnet_network_security_group_association" "fleet" {
  subnet_id                 = azurerm_subnet.fleet.id
  network_security_group_id = azurerm_network_security_group.fleet.id
}

resource "azurerm_public_ip" "box" {
  count               = var.instance_count
  name                = "${local.names[count.index]}-ip"
  location            = azurerm_resource_group.fleet.location
  resource_group_name = azurerm_resource_group.fleet.name
  sku                 = "Standard"
  allocation_method   = "Static"
  ip_version          = "IPv4"
  tags                = local.tags
}

resource "azurerm_network_interface" "box" {
  #checkov:skip=CKV_AZURE_119:the boxes are reached directly over SSH from allowed_cidr, so each NIC has a public IP
  count               = var.instance_count
  name                = "${local.names[count.index]}-nic"
  location            = azurerm_resource_group.fleet.location
  resource_group_name = azurerm_resource_group.fleet.name
  tags                = local.tags

  ip_configuration {
    name                          = "ipconfig1"
    subnet_id                     = azurerm_subnet.fleet.id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = azurerm_public_ip.box[count.index].id
  }
}

# The boxes' SSH host keys. Their private halves live in the Terraform state: treat the state as a secret.
resource "tls_private_key" "host" {
  count     = var.instance_count
  algorithm = "ED25519"
}

resource "azurerm_linux_virtual_machine" "box" {
  count                           = var.instance_count
  name                            = local.names[count.index]
  computer_name                   = local.names[count.index]
  location                        = azurerm_resource_group.fleet.location
  resource_group_name             = azurerm_resource_group.fleet.name
  size                            = var.size
  admin_username                  = local.login_user
  disable_password_authentication = true
  allow_extension_operations      = false
  provision_vm_agent              = true
  encryption_at_host_enabled      = var.encryption_at_host
  network_interface_ids           = [azurerm_network_interface.box[count.index].id]

  # Spot boxes are deallocated on eviction, keeping their disk and pinned host key; they start again by hand.
  priority        = var.spot ? "Spot" : "Regular"
  eviction_policy = var.spot ? "Deallocate" : null
  max_bid_price   = var.spot ? var.max_bid_price : -1

  admin_ssh_key {
    username   = local.login_user
    public_key = var.ssh_public_key
  }

  custom_data = base64encode("#cloud-config\n${yamlencode(merge(local.cloud_config, {
    ssh_keys = {
      ed25519_private = tls_private_key.host[count.index].private_key_openssh
      ed25519_public  = trimspace(tls_private_key.host[count.index].public_key_openssh)
    }
  }))}")

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
    disk_size_gb         = var.os_disk_gb
  }

  source_image_reference {
    publisher = local.image.publisher
    offer     = local.image.offer
    sku       = local.image.sku
    version   = local.image.version
  }

  tags = merge(local.tags, { "orchestrate-host-key" = trimspace(tls_private_key.host[count.index].public_key_openssh) })

  depends_on = [azurerm_subnet_network_security_group_association.fleet] # no box is up before its NSG guards it
}
