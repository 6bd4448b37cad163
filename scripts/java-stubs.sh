#!/usr/bin/env bash
# Compiles grpc-java stubs for every proto with Maven Central's protoc and javac (Java 17), so a
# proto change that breaks another language's stubs fails CI (e.g. builder.proto's outer class
# once called Builder and clashed with every message's nested Builder: 19 javac errors).
# Maven's downloads are cached in ~/.m2 like the Kafka jars; the output stays in target/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v mvn >/dev/null || { echo "java-stubs: mvn is required (apt-get install maven)" >&2; exit 2; }
pom="$root/scripts/java-stubs/pom.xml"
mvn -B -q -f "$pom" clean compile
classes="$root/scripts/java-stubs/target/classes"
# One class per message and one *Grpc per service: a proto that generated nothing would pass javac silently.
for needed in dev/rebootless/builder/v1/BuilderProto.class dev/rebootless/builder/v1/BuildServiceGrpc.class \
  dev/rebootless/dispatcher/v1/RolloutServiceGrpc.class dev/rebootless/dispatcher/v1/AgentGatewayGrpc.class \
  dev/rebootless/ledger/v1/LedgerServiceGrpc.class dev/rebootless/agent/v1/AgentControlGrpc.class \
  dev/rebootless/events/v1/Envelope.class; do
  [[ -f "$classes/$needed" ]] || { echo "java-stubs: $needed was not generated" >&2; exit 1; }
done
echo "java-stubs: $(find "$classes" -name '*.class' | wc -l) classes compiled from proto/ with javac $(javac -version 2>&1 | cut -d' ' -f2)"
