"""manual-deploy: ship an HCA ingest app to EKS when GitLab is down."""

__version__ = "0.1.0"
