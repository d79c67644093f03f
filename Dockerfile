# The official Airflow image with the project's pinned requirements baked in (see requirements.txt).
# AIRFLOW_VERSION must equal the apache-airflow pin in requirements.txt (tests/deploy checks it).
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG AIRFLOW_VERSION

USER root
# gpg for OpenPGP encryption (python-gnupg drives the real binary). The staging, reports and auth
# directories exist in the image so that the named volumes mounted there start with the image's
# owner and mode (uid airflow, group 0: any AIRFLOW_UID with group 0 can use them); staging holds
# plaintext lists between tasks, so only owner and group get in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o airflow -g 0 -m 0770 /opt/kbi/staging /opt/airflow/auth \
 && install -d -o airflow -g 0 -m 0775 /opt/kbi/reports
USER airflow

COPY --chown=airflow:0 requirements.txt /opt/kbi/requirements.txt
# apache-airflow is named again so that pip can never move it off the image's version.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/kbi/requirements.txt
