# checks.x86_64-linux.nixos-module: a NixOS VM runs services.timestamp-api with the local Redis
# (redis.createLocally) and secrets made at boot outside the store, as sops-nix or agenix would
# provide them. The script serves a PUT and a GET over HTTP, stops and starts Redis and sees the
# same process serve again, checks that the password is readable by nobody but root and the
# service (and is in no unit, environment or ACL), and that `systemd-analyze security` rates
# the unit below 2.0. Needs KVM: `nix flake check` on Linux with the `kvm` and `nixos-test`
# system features (docs/nix.md, "The VM test"). Written from nixpkgs' test framework sources
# (pkgs.testers.runNixOSTest, nixos/lib/testing/); not yet run.
{
  pkgs,
  module,
}:
pkgs.testers.runNixOSTest {
  name = "timestamp-api-nixos-module";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];

      services.timestamp-api = {
        enable = true;
        # The script below reads them; the options default to null (the service's default).
        listen = "127.0.0.1:8080";
        adminListen = "127.0.0.1:9090";
        redis = {
          createLocally = true;
          passwordFile = "/var/lib/secrets/redis-password";
        };
        cursorKeyFile = "/var/lib/secrets/cursor-key";
      };

      # Random secrets, root-only, written before anything reads them.
      systemd.services.make-secrets = {
        description = "Secrets for the timestamp-api test";
        requiredBy = [
          "timestamp-api.service"
          "timestamp-api-redis-acl.service"
        ];
        before = [
          "timestamp-api.service"
          "timestamp-api-redis-acl.service"
        ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = ''
          mkdir -p /var/lib/secrets
          for secret in redis-password cursor-key; do
            od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"/var/lib/secrets/$secret"
          done
        '';
      };

      environment.systemPackages = [ pkgs.curl ];
    };

  testScript =
    { nodes, ... }:
    let
      cfg = nodes.machine.services.timestamp-api;
    in
    ''
      import json
      import re

      api = "http://${cfg.listen}"
      admin = "http://${cfg.adminListen}"
      password_file = "${cfg.redis.passwordFile}"
      credentials = "/run/credentials/timestamp-api.service"
      acl = "/run/timestamp-api-redis-acl/users.acl"
      units = "timestamp-api.service redis-timestamp-api.service timestamp-api-redis-acl.service"


      def main_pid() -> str:
          return machine.succeed("systemctl show --property MainPID --value timestamp-api.service").strip()


      start_all()
      machine.wait_for_unit("redis-timestamp-api.service")
      machine.wait_for_unit("timestamp-api.service")
      machine.wait_until_succeeds(f"curl --fail --silent {admin}/readyz", timeout=60)

      with subtest("a PUT and a GET over HTTP"):
          body = json.dumps({"epoch_ms": 1795628183123})
          put = json.loads(machine.succeed(
              f"curl --fail --silent -X PUT -H 'Content-Type: application/json' -d '{body}' "
              f"{api}/v1/timestamps/deploy"
          ))
          assert put["timestamp"] == "2026-11-25T17:36:23.123Z", put
          got = json.loads(machine.succeed(f"curl --fail --silent {api}/v1/timestamps/deploy"))
          assert got == put, (got, put)

      with subtest("the service recovers when Redis comes back, without a restart of its own"):
          pid = main_pid()
          machine.succeed("systemctl stop redis-timestamp-api.service")
          machine.wait_until_fails(f"curl --fail --silent {admin}/readyz", timeout=30)
          machine.fail(f"curl --fail --silent {api}/v1/timestamps/deploy")
          machine.succeed("systemctl start redis-timestamp-api.service")
          machine.wait_until_succeeds(f"curl --fail --silent {admin}/readyz", timeout=60)
          # The append-only file kept the value; the same process serves it.
          got = json.loads(machine.succeed(f"curl --fail --silent {api}/v1/timestamps/deploy"))
          assert got == put, (got, put)
          machine.succeed(f"curl --fail --silent -X PUT {api}/v1/timestamps/after-restart")
          assert main_pid() == pid, "timestamp-api was restarted"

      with subtest("the password is readable by root and the service only"):
          password = machine.succeed(f"cat {password_file}").strip()
          assert len(password) == 64, password
          for path in [password_file, f"{credentials}/redis-password", acl]:
              mode = machine.succeed(f"stat --format %a {path}").strip()
              assert mode.endswith("0"), f"{path} has mode {mode}"
              machine.fail(f"runuser -u nobody -- cat {path}")
          # Not in any unit (the units live in the Nix store), the service's environment or
          # the ACL, which holds its SHA-256.
          machine.succeed(f"systemctl cat {units} >/tmp/units")
          machine.fail(f"grep --fixed-strings {password} /tmp/units")
          machine.fail(f"grep --fixed-strings {password} /proc/{main_pid()}/environ")
          machine.fail(f"grep --fixed-strings {password} {acl}")
          machine.succeed(f"grep --fixed-strings \"$(printf %s {password} | sha256sum | cut -d ' ' -f 1)\" {acl}")

      with subtest("systemd-analyze security rates the unit below 2.0"):
          report = machine.succeed("systemd-analyze security --no-pager timestamp-api.service")
          print(report)  # the whole table, for review in the build log
          match = re.search(r"Overall exposure level for .*?: (\d+\.\d+)", report)
          assert match, report
          exposure = float(match.group(1))
          assert exposure < 2.0, f"exposure {exposure}, expected below 2.0:\n{report}"
    '';
}
