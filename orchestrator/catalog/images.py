"""The machine images a cloud run boots: the defaults the plan names, and what a user's ``--image`` may be."""

from __future__ import annotations

# The AWS Deep Learning AMI (NVIDIA driver, Ubuntu 22.04), resolved by EC2 itself from its public SSM parameter at
# launch (FACTS.md; AWS DLAMI developer guide, "find-dlami-id"). Current DLAMIs do not support P2 (K80) or P3 (V100).
AWS_DLAMI = "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
AWS_DLAMI_UNSUPPORTED = ("p2", "p3")
# Azure's Ubuntu HPC 22.04 (the Data Science VM family): NVIDIA driver and CUDA for the N-series sizes.
AZURE_UBUNTU_HPC = "microsoft-dsvm:ubuntu-hpc:2204:latest"
# What each cloud's --image may be: (pattern, the accepted forms for the error line).
IMAGE_FORMATS = {
    "aws": (r"ami-[0-9a-f]{8,17}|resolve:ssm:/[\w./-]{1,1000}",
            "an AMI id such as ami-0123456789abcdef0, or resolve:ssm:/<public parameter>"),
    "azure": (r"[\w.-]{1,200}:[\w.-]{1,200}:[\w.-]{1,200}:[\w.-]{1,100}|/subscriptions/[\w./-]{1,1000}",
              "publisher:offer:sku:version such as " + AZURE_UBUNTU_HPC + ", or an image's resource id"),
}
