"""Deployment helpers: submit the compiled acgate pipeline to a Kubeflow Pipelines API.

The submitter lives in :mod:`acgate.deploy.submit` and is run as
``python -m acgate.deploy.submit`` (the Helm chart's CronJob does exactly that). This package
deliberately imports nothing, so ``python -m`` does not import the module twice.
"""
