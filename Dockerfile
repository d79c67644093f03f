# The official Airflow image with the project's pinned requirements baked in (see requirements.txt).
FROM apache/airflow:3.3.2-python3.11

USER root
# gpg for OpenPGP encryption (python-gnupg drives the real binary)
RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt /opt/kbi/requirements.txt
RUN pip install --no-cache-dir -r /opt/kbi/requirements.txt
