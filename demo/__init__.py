"""The demo: synthetic KBI data, embedded servers and one yearly distribution through Airflow."""
