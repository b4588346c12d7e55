# One image per service, each with only what it needs:
#   docker build -f docker/service.Dockerfile --build-arg SERVICE=selector .
# The trainer and deployer add CPU torch (swap the index URL for a CUDA build on GPU servers).
FROM python:3.11-slim
ARG SERVICE
ARG TORCH=""
ENV PYTHONUNBUFFERED=1 STRATOS_HOME=/var/lib/stratos
WORKDIR /app
COPY shared /app/shared
COPY services/${SERVICE} /app/service
RUN if [ -n "$TORCH" ]; then pip install --no-cache-dir "torch==${TORCH}" --index-url https://download.pytorch.org/whl/cpu; fi \
 && pip install --no-cache-dir /app/shared /app/service
RUN useradd --uid 1000 --create-home stratos && mkdir -p /var/lib/stratos && chown stratos /var/lib/stratos
USER stratos
ENV SERVICE=${SERVICE}
CMD ["sh", "-c", "exec stratos-$SERVICE"]
