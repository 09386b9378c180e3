# Deliberately wrong: SSH open to the whole Internet. tests/iac/test_terraform.py proves with it that both its own
# check (open_ssh_rules) and checkov's CKV_AWS_24 fail such a rule. Never apply it.
resource "aws_security_group" "open_ssh" {
  name        = "open-ssh"
  description = "SSH from anywhere (a test fixture that must fail the checks)"

  ingress {
    description = "SSH from anywhere"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
