"""The one module family that talks to MLflow: tracking and the promotion gate."""
