"""Test helper: sets up and reads back moto's Firehose + S3 (boto3, shipped with moto).

  moto_helper.py ENDPOINT setup BUCKET STREAM=PREFIX [STREAM=PREFIX ...]
  moto_helper.py ENDPOINT objects BUCKET          -> JSON {key: text} on stdout
"""
import json
import sys

import boto3


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def setup(endpoint, bucket, streams):
    client("s3", endpoint).create_bucket(Bucket=bucket)
    firehose = client("firehose", endpoint)
    for spec in streams:
        name, prefix = spec.split("=", 1)
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-delivery",
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "Prefix": prefix,
            },
        )


def objects(endpoint, bucket):
    s3 = client("s3", endpoint)
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"]] = body.decode("utf-8", "replace")
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    endpoint, command = sys.argv[1], sys.argv[2]
    if command == "setup":
        setup(endpoint, sys.argv[3], sys.argv[4:])
    elif command == "objects":
        objects(endpoint, sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
