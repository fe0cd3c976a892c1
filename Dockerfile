# syntax=docker/dockerfile:1
# The image holds exactly the `make dist` artifact, installed for production.
# No container engine runs on the development machines: test/e2e/artifact.test.ts
# builds and installs the same artifact the same way and runs it as a non-root
# user from a read-only folder; that test is what proves this file's contents.

# --- build: compile and pack (make dist) on the full Node 24 image
FROM node:24-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN make dist

# --- install: the packed artifact and its production dependencies only
FROM node:24-bookworm-slim AS install
WORKDIR /app
COPY --from=build /src/dist/tenant-registry-*.tgz /tmp/
RUN echo '{"name":"tenant-registry-image","private":true}' > package.json \
 && npm install /tmp/tenant-registry-*.tgz --omit=dev --omit=optional --no-audit --no-fund \
 && rm /tmp/tenant-registry-*.tgz

# --- runtime: Node 24 slim, the installed artifact, a fixed non-root user
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH
WORKDIR /app
COPY --from=install --chown=0:0 /app /app
# Fixed ids so the Deployment's runAsUser/runAsGroup match; the files stay root-owned and read-only to it.
USER 10001:10001
EXPOSE 8090
ENTRYPOINT ["tenant-registry"]
CMD ["serve"]
