# Sets up a fresh moto S3 server for one test: an IAM user with an access key allowed s3:*, and
# the bucket. moto_server is started with INITIAL_NO_AUTH_ACTION_COUNT=4, so exactly these four
# calls run before it starts checking every request's signature against IAM; after them a wrong
# secret is refused as real S3 refuses it. Prints the key as JSON on stdout.
# Usage: python3 moto_setup.py <endpoint url> <bucket>
import json
import socket
import sys
import time
from urllib.parse import urlparse

import boto3

url, bucket = sys.argv[1], sys.argv[2]
parsed = urlparse(url)
deadline = time.monotonic() + 120
while True:
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"moto_server at {url} did not listen within 120 s")
        time.sleep(0.1)

setup = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **setup)
iam.create_user(UserName="registre-worker")
key = iam.create_access_key(UserName="registre-worker")["AccessKey"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy(UserName="registre-worker", PolicyName="s3", PolicyDocument=json.dumps(policy))
boto3.client("s3", **setup).create_bucket(Bucket=bucket)
print(json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))
