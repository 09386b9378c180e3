# Deliberately wrong: network security rules that open SSH to the whole Internet, in the forms Azure accepts.
# tests/iac/test_terraform.py proves with them that open_ssh_rules flags each one. Never apply it.
resource "azurerm_network_security_group" "open_ssh" {
  name                = "open-ssh"
  location            = "eastus"
  resource_group_name = "open-ssh"

  security_rule {
    name                       = "ssh-from-internet"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "Internet"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "22"
  }
}

resource "azurerm_network_security_rule" "any_port_from_anywhere" {
  name                        = "any-port-from-anywhere"
  priority                    = 110
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "*"
  source_address_prefix       = "*"
  source_port_range           = "*"
  destination_address_prefix  = "*"
  destination_port_range      = "*"
  resource_group_name         = "open-ssh"
  network_security_group_name = "open-ssh"
}

resource "azurerm_network_security_rule" "port_range_from_any" {
  name                        = "port-range-from-any"
  priority                    = 120
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_address_prefixes     = ["10.0.0.0/8", "0.0.0.0/0"]
  source_port_range           = "*"
  destination_address_prefix  = "*"
  destination_port_ranges     = ["20-30"]
  resource_group_name         = "open-ssh"
  network_security_group_name = "open-ssh"
}
