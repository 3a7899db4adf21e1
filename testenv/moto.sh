#!/usr/bin/env bash
# testenv/moto.sh start|stop|status|logs [N]: the moto DynamoDB emulator (see testenv/dynamo.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/dynamo.sh" moto "$@"
