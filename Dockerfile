FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY guardgate ./guardgate
RUN pip install --no-cache-dir . && useradd --system --uid 10001 guardgate

USER guardgate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/_guardgate/healthz')"

# Mount the policy at /etc/guardgate/policy.yaml.
ENTRYPOINT ["guardgate", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--policy", "/etc/guardgate/policy.yaml"]
