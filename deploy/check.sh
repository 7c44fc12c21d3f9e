#!/usr/bin/env bash
# Checks the Kubernetes manifests under deploy/k8s (or the directory given)
# without a cluster: every YAML document must parse, keys must not repeat
# (kubectl rejects duplicates; most YAML parsers silently keep the last),
# and every object needs apiVersion, kind and metadata.name (a Kustomization
# needs no name). With python3 + PyYAML it also checks that workload
# selectors match their pod labels and that kustomization.yaml lists only
# files that exist and every manifest but *.example.yaml. If kubectl is
# installed, `kubectl kustomize` must render the directory. The NATS image
# tag must be the nats-server version pkg/go.mod pins, and that library
# (from the module cache) must parse nats.conf with hex-looking passwords.
# This checks form, not behaviour: there is no cluster on the machine that
# runs it.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)/k8s}"
mapfile -t files < <(find "$dir" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ "${#files[@]}" -gt 0 ] || { echo "check: no YAML under $dir"; exit 1; }

if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
  python3 - "$dir" "${files[@]}" <<'PY'
import os, sys, yaml

class Strict(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)
Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)

root, files = sys.argv[1], sys.argv[2:]
errors, names, kust = [], {}, None
for path in files:
    rel = os.path.relpath(path, root)
    try:
        docs = list(yaml.load_all(open(path), Loader=Strict))
    except yaml.YAMLError as e:
        errors.append(f"{rel}: {e}")
        continue
    for i, d in enumerate(docs):
        where = f"{rel} doc {i + 1}"
        if d is None:
            continue  # an empty document (comments only) is valid YAML
        if not isinstance(d, dict):
            errors.append(f"{where}: not a mapping"); continue
        kind, meta = d.get("kind"), d.get("metadata") or {}
        if not d.get("apiVersion") or not kind:
            errors.append(f"{where}: missing apiVersion or kind"); continue
        if kind == "Kustomization":
            kust = (path, d); continue
        name = meta.get("name") if isinstance(meta, dict) else None
        if not name:
            errors.append(f"{where}: {kind} without metadata.name"); continue
        key = (kind, meta.get("namespace"), name)
        if key in names:
            errors.append(f"{where}: {kind} {name} also in {names[key]}")
        names[key] = where
        spec = d.get("spec") or {}
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            want = (spec.get("selector") or {}).get("matchLabels") or {}
            have = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not want or any(have.get(k) != v for k, v in want.items()):
                errors.append(f"{where}: {kind} {name}: selector {want} does not match pod labels {have}")
if kust:
    kpath, k = kust
    listed = set(k.get("resources") or [])
    for r in sorted(listed):
        if not os.path.exists(os.path.join(os.path.dirname(kpath), r)):
            errors.append(f"kustomization: resource {r} does not exist")
    for path in files:
        rel = os.path.relpath(path, os.path.dirname(kpath))
        if path != kpath and rel not in listed and not rel.endswith(".example.yaml"):
            errors.append(f"kustomization: {rel} is not listed in resources")
for e in errors:
    print("check:", e)
if errors:
    sys.exit(1)
print(f"check: {len(files)} files, {len(names)} objects OK (python3 yaml)")
PY
elif command -v ruby >/dev/null; then
  ruby -ryaml -e '
    bad = 0
    ARGV.each do |f|
      begin
        YAML.load_stream(File.read(f)).each_with_index do |d, i|
          next if d.nil?
          ok = d.is_a?(Hash) && d["apiVersion"] && d["kind"] &&
               (d["kind"] == "Kustomization" || (d["metadata"].is_a?(Hash) && d["metadata"]["name"]))
          unless ok then puts "check: #{f} doc #{i + 1}: missing apiVersion/kind/metadata.name"; bad += 1 end
        end
      rescue Psych::SyntaxError => e
        puts "check: #{f}: #{e.message}"; bad += 1
      end
    end
    puts "check: #{ARGV.size} files OK (ruby yaml)" if bad.zero?
    exit(bad.zero? ? 0 : 1)' "${files[@]}"
else
  # No parser on this machine (PyPI is out of reach to install one): say so
  # loudly rather than fail CI for a missing tool.
  echo "check: SKIPPED YAML checks: needs python3 with PyYAML, or ruby"
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
natsv=$(awk '$1 == "github.com/nats-io/nats-server/v2" {print $2}' "$root/pkg/go.mod" 2>/dev/null || true)

# The NATS image runs the nats-server version the code and every test use
# (pkg/go.mod): an older server parses nats.conf differently (2.12 read a
# hex password from the environment as a number and failed).
if [ -f "$dir/nats.yaml" ]; then
  [ -n "$natsv" ] || { echo "check: no github.com/nats-io/nats-server/v2 version in $root/pkg/go.mod"; exit 1; }
  mapfile -t images < <(grep -oE '^[[:space:]]*image:[[:space:]]*nats:[^[:space:]#]+' "$dir/nats.yaml" | sed -E 's/.*image:[[:space:]]*//' | sort -u)
  [ "${#images[@]}" -gt 0 ] || { echo "check: nats.yaml: no nats image"; exit 1; }
  for img in "${images[@]}"; do
    tag="${img#nats:}"; tag="${tag%%@*}"; tag="${tag%-alpine}"
    if [ "$tag" != "${natsv#v}" ]; then
      echo "check: nats.yaml runs $img, but pkg/go.mod pins nats-server $natsv (want nats:${natsv#v}-alpine)"; exit 1
    fi
  done
  if [ -f "$root/deploy/README.md" ]; then
    while read -r img; do
      [ "$img" = "${images[0]%%@*}" ] || { echo "check: deploy/README.md names $img, nats.yaml runs ${images[0]}"; exit 1; }
    done < <(grep -oE 'nats:[0-9]+\.[0-9][^`[:space:]]*' "$root/deploy/README.md" | sort -u)
  fi
  echo "check: NATS image ${images[*]} matches nats-server $natsv (pkg/go.mod)"
fi

# nats.conf is YAML-in-YAML: have the nats-server version pkg/ pins parse it
# (offline, from the module cache; skipped when go, openssl, PyYAML or the
# module is missing, but a compile error fails).
if command -v go >/dev/null && command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null &&
   command -v openssl >/dev/null && [ -n "$natsv" ] && [ -f "$dir/nats.yaml" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  python3 -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "ConfigMap" and "nats.conf" in d.get("data", {}):
        open(sys.argv[2], "w").write(d["data"]["nats.conf"])' "$dir/nats.yaml" "$tmp/nats.conf"
  # The server loads certificates as it parses: make them as
  # deploy/README.md says (which checks the recipe too) where the pods mount
  # Secret leadflow-tls.
  mkdir "$tmp/tls"
  (cd "$tmp/tls" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj /CN=leadflow-ca -keyout ca.key -out ca.crt &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=leadflow -keyout tls.key -out tls.csr &&
    SAN=DNS:*.nats-headless,DNS:*.nats-headless.leadflow.svc,DNS:*.nats-headless.leadflow.svc.cluster.local &&
    for n in nats intake qualification handoff nurture projector; do
      SAN="$SAN,DNS:$n,DNS:$n.leadflow.svc,DNS:$n.leadflow.svc.cluster.local"
    done &&
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out tls.crt -extfile <(printf \
      'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$SAN")
  ) >/dev/null 2>&1 || { echo "check: openssl could not make the certificates deploy/README.md describes"; exit 1; }
  sed -i "s#/etc/nats-tls/#$tmp/tls/#g" "$tmp/nats.conf"
  printf 'module natscheck\ngo 1.26.0\nrequire github.com/nats-io/nats-server/v2 %s\n' "$natsv" >"$tmp/go.mod"
  cp "$root/pkg/go.sum" "$tmp/"
  cat >"$tmp/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
	"regexp"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	os.Setenv("SERVER_NAME", "nats-0")
	os.Setenv("CLUSTER_ADVERTISE", "nats-0.nats-headless:6222")
	// The users' passwords come from the environment ($NATS_<ROLE>_PASSWORD).
	// Give them values that look like numbers (what `openssl rand -hex`
	// prints can: 4e2... is 4 x 10^2...), which must still read back as
	// the same strings.
	conf, _ := os.ReadFile(os.Args[1])
	want := map[string]bool{}
	for i, m := range regexp.MustCompile(`\$(NATS_[A-Z_]+_PASSWORD)`).FindAllSubmatch(conf, -1) {
		pw := fmt.Sprintf("4e2ab%043x", i+1)
		if i%2 == 1 {
			pw = fmt.Sprintf("4e2%045d", i+1)
		}
		os.Setenv(string(m[1]), pw)
		want[pw] = true
	}
	o, err := server.ProcessConfigFile(os.Args[1])
	if err == nil {
		for _, u := range o.Users {
			if !want[u.Password] {
				err = fmt.Errorf("user %s: password read as %q, not as the string in its environment variable", u.Username, u.Password)
				break
			}
		}
	}
	if err == nil && (!o.JetStream || !o.SyncAlways || o.StoreDir != "/data" || len(o.Routes) != 3 || o.ServerName != "nats-0" || len(o.Users) == 0 ||
		o.TLSConfig == nil || o.Cluster.TLSConfig == nil || o.Cluster.Advertise != "nats-0.nats-headless:6222") {
		err = fmt.Errorf("want jetstream, sync always, /data, 3 routes, server_name and cluster advertise from env, users, TLS for clients and routes; got %v %v %q %d %q %q %d users, TLS %v %v",
			o.JetStream, o.SyncAlways, o.StoreDir, len(o.Routes), o.ServerName, o.Cluster.Advertise, len(o.Users), o.TLSConfig != nil, o.Cluster.TLSConfig != nil)
	}
	if err != nil {
		fmt.Println("check: nats.conf:", err)
		os.Exit(1)
	}
	fmt.Printf("check: nats.conf parses (nats-server library): sync always, 3 routes, TLS for clients and routes, %d users\n", len(o.Users))
}
GO
  # Skip only when the module (or one it needs) is not in the cache; once
  # it is, a failing build is a real error.
  if (cd "$tmp" && export GOWORK=off GOFLAGS=-mod=mod GOPROXY=off &&
      go list -m github.com/nats-io/nats-server/v2 &&
      go list -deps github.com/nats-io/nats-server/v2/server) >/dev/null 2>&1; then
    if ! out=$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod GOPROXY=off go build -o natscheck . 2>&1); then
      printf 'check: the nats.conf parser does not build:\n%s\n' "$out"; exit 1
    fi
    "$tmp/natscheck" "$tmp/nats.conf"
  else
    echo "check: SKIPPED nats.conf parse: nats-server $natsv is not in the module cache"
  fi
fi

if command -v kubectl >/dev/null && [ -f "$dir/kustomization.yaml" ]; then
  out=$(kubectl kustomize "$dir") || { echo "check: kubectl kustomize $dir failed"; exit 1; }
  echo "check: kubectl kustomize renders $(grep -c '^kind:' <<<"$out") objects"
fi
