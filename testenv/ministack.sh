#!/usr/bin/env bash
# testenv/ministack.sh start|stop|status|logs [N]: the ministack DynamoDB emulator (see testenv/dynamo.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/dynamo.sh" ministack "$@"
