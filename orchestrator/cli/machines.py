"""`orchestrate inventory`, `orchestrate catalog` and `orchestrate breakeven`: which machines exist and what they cost.

Registered on the main group in :mod:`orchestrator.cli`; thin over :mod:`orchestrator.api`, rendered with rich.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich import box
from rich.markup import escape

from orchestrator.cli.console import json_text, out
from orchestrator.cli.params import NON_NEGATIVE, POSITIVE
from orchestrator.errors import SpecError

# Commands import the control plane lazily: `orchestrate --help` takes 0.2 s (+0.2 s with orchestrator.api or the
# catalog, +10 ms with rich.table).


@click.group()
def inventory() -> None:
    """Rented and owned boxes reached over SSH ($ORCHESTRATE_HOME/inventory.yaml, or $ORCHESTRATE_INVENTORY).

    \b
    An inventory file:
      hosts:
        - name: lab-4090
          host: 203.0.113.10
          user: ubuntu
          key_path: ~/.ssh/lab_ed25519
          host_key: "ssh-ed25519 AAAAC3Nz..."     # or "SHA256:...", or trust_on_first_use: true
          gpu: {model: RTX 4090, count: 1}
          price: {per_month: 350, utilisation: 0.5}   # or per_hour: 0.8, or owned: {...}
          prepare: image                          # image | venv | none
          python: /opt/venv/bin/python

    \b
    Examples:
      orchestrate inventory list
      orchestrate inventory check
      orchestrate inventory check --host lab-4090
      orchestrate inventory import-terraform fleet.json --key ~/.ssh/fleet_ed25519
    """


@inventory.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inventory_list(as_json: bool) -> None:
    """List the inventory's boxes, their price per hour and which run holds each.

    \b
    Example:
      orchestrate inventory list
    """
    from rich.table import Table

    from orchestrator import api

    rows = api.inventory_rows()
    if as_json:
        click.echo(json_text(rows))
        return
    table = Table(title="inventory")
    for column in ("name", "address", "gpu", "price/h", "prepare", "host key", "leased by"):
        table.add_column(column, justify="right" if column == "price/h" else "left")
    for row in rows:
        table.add_row(row["name"], row["address"], row["gpu"], f"${row['price_per_hour']:.4f}", row["prepare"],
                      row["host_key"], row["leased_by"] or "")
    out.print(table)


@inventory.command("check")
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Only these boxes; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inventory_check(hosts: tuple[str, ...], as_json: bool) -> None:
    """Check each box: reachable with its pinned host key, its GPUs, and whether Keras and a backend import.

    Exits 1 when any box fails.

    \b
    Examples:
      orchestrate inventory check
      orchestrate inventory check --host lab-4090 --json
    """
    from rich.table import Table

    from orchestrator import api

    results = api.inventory_check(list(hosts) or None)
    if as_json:
        click.echo(json_text(results))
    else:
        table = Table(title="inventory check")
        for column in ("name", "reachable", "python", "keras", "backend", "gpus", "problem"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(r["name"], "[green]yes[/]" if r["reachable"] else "[red]no[/]", r.get("python") or "",
                          r.get("keras") or "", r.get("backend") or "", r.get("gpus") or "",
                          escape(r.get("problem") or ""))
        out.print(table)
    if any(r.get("problem") for r in results):
        sys.exit(1)


@inventory.command("import-terraform")
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True,
              help="The private key whose public half the Terraform module was given (ssh_public_key).")
@click.option("--merge", is_flag=True, help="Add to (or replace same-named boxes in) an existing inventory.")
@click.option("--prepare", type=click.Choice(["image", "venv", "none"]), default="image", show_default=True,
              help="How runs ready the payload's environment on these boxes.")
@click.option("--python", default="python3", show_default=True,
              help="The interpreter with Keras on the boxes, e.g. a Packer image's /opt/orchestrate/venv/bin/python.")
def inventory_import_terraform(output: Path, key_path: Path, merge: bool, prepare: str, python: str) -> None:
    """Add the boxes of a Terraform fleet (terraform/aws, terraform/azure) to the inventory, host keys pinned from
    the module's outputs.

    \b
    Examples:
      terraform -chdir=terraform/aws output -json > fleet.json
      orchestrate inventory import-terraform fleet.json --key ~/.ssh/fleet_ed25519
      orchestrate inventory import-terraform fleet.json --key ~/.ssh/fleet_ed25519 --merge
      orchestrate inventory check
    """
    from orchestrator import api

    done = api.import_terraform(output, key_path=key_path, merge=merge, prepare=prepare, python=python)
    names = ", ".join([*done.added, *done.replaced])
    replaced = f" ({len(done.replaced)} replaced)" if done.replaced else ""
    out.print(f"imported {len(done.added) + len(done.replaced)} box(es) into {escape(str(done.path))}{replaced}: "
              f"{escape(names)}; host keys pinned from the Terraform outputs")
    out.print("[dim]next: orchestrate inventory check[/]")


@click.group(invoke_without_command=True)
@click.option("--gpu", help="Only offers whose accelerator contains this text (case-insensitive), e.g. K80.")
@click.option("--provider", "-p", help="Only this provider's offers: aws, azure, rented, owned.")
@click.option("--max-price", type=NON_NEGATIVE, help="Only offers at most this many USD per hour.")
@click.option("--sort", "sort_key", type=click.Choice(["price", "price_per_gpu"]), default="price",
              show_default=True, help="Cheapest first, per machine-hour or per GPU-hour (on-demand).")
@click.option("--all", "include_retired", is_flag=True, help="Include retired offers.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def catalog(
    ctx: click.Context, gpu: str | None, provider: str | None, max_price: float | None, sort_key: str,
    include_retired: bool, as_json: bool,
) -> None:
    """What can be launched and what an hour of it costs, with the source and date of every price.

    The catalog in force is $ORCHESTRATE_HOME/offers.csv when it exists (written by `catalog refresh`),
    else the one shipped with Orchestrate.

    \b
    Examples:
      orchestrate catalog
      orchestrate catalog --gpu K80 --all
      orchestrate catalog --provider aws --max-price 5 --sort price_per_gpu
      orchestrate catalog --gpu a100 --json
      orchestrate catalog refresh --provider azure
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from orchestrator.catalog import catalog_path, filter_offers, load_offers, sort_offers

    every = load_offers()
    providers = sorted({offer.provider for offer in every})
    if provider is not None and provider.casefold() not in providers:
        raise SpecError("--provider", provider, "a provider of the catalog: " + ", ".join(providers))
    offers = sort_offers(
        filter_offers(every, gpu=gpu, provider=provider, max_price=max_price, include_retired=include_retired),
        sort_key,
    )
    if as_json:
        click.echo(json_text([offer.to_json() for offer in offers]))
        return
    if not offers:
        out.print("no offers match" + ("" if include_retired else " (retired offers are hidden: add --all)"))
        return
    table = Table(title=f"catalog ({catalog_path()})", caption="prices: USD, on-demand unless marked spot",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("provider", "instance type", "accelerator", "GiB/GPU", "vCPUs", "mem GiB", "region",
                   "$/h", "spot $/h", "$/GPU-h", "billing", "status", "as of"):
        numeric = column in ("GiB/GPU", "vCPUs", "mem GiB") or "$" in column
        table.add_column(column, justify="right" if numeric else "left", overflow="fold",
                         no_wrap=column != "accelerator", min_width=18 if column == "accelerator" else None)
    for o in offers:
        per_gpu = o.price_per_gpu_hour
        status_text = f"[red]retired[/]\n{o.retired_on}" if o.retired else (
            f"retires\n{o.retired_on}" if o.retired_on else "[green]available[/]")
        table.add_row(
            o.provider, escape(o.instance_type), f"{o.gpu_count} × {escape(o.accelerator)}",
            f"{o.gpu_memory_gib:g}", str(o.vcpus), f"{o.memory_gib:g}", o.region,
            f"{o.on_demand_per_hour:.4g}", "" if o.spot_per_hour is None else f"{o.spot_per_hour:.4g}",
            "" if per_gpu is None else f"{per_gpu:.4g}", o.billing_rule, status_text, o.as_of.isoformat(),
        )
    out.print(table)
    out.print("[dim]sources: `orchestrate catalog --json` (field source) or the catalog file[/]")


@catalog.command("refresh")
@click.option("--provider", "-p", required=True, type=click.Choice(["aws", "azure"]), help="Whose prices to fetch.")
@click.option("--region", help="Price this region (AWS: us-east-1; Azure: eastus) instead of each row's own.")
@click.option("--endpoint-url", help="Another address for the price API (AWS endpoint, or Azure prices URL).")
@click.option("--spot-endpoint-url", help="AWS only: another address for the EC2 API asked for spot prices.")
def catalog_refresh(provider: str, region: str | None, endpoint_url: str | None,
                    spot_endpoint_url: str | None) -> None:
    """Fetch current prices for the catalog's available offers and write $ORCHESTRATE_HOME/offers.csv.

    AWS: on-demand prices from the AWS Price List API (boto3 `pricing`: Linux, shared tenancy) and spot prices
    from EC2 DescribeSpotPriceHistory (the lowest zone's current Linux/UNIX price); both need AWS credentials in
    the environment (pricing:GetProducts, ec2:DescribeSpotPriceHistory). Azure: the Azure Retail Prices API (no
    credentials; Linux pay-as-you-go and Spot meters). Nothing is written if a request fails.

    \b
    Examples:
      orchestrate catalog refresh --provider aws
      orchestrate catalog refresh --provider azure --region westeurope
      orchestrate catalog refresh --provider aws --endpoint-url http://127.0.0.1:4566
    """
    from orchestrator.catalog.refresh import refresh_catalog

    result = refresh_catalog(provider, region=region, endpoint_url=endpoint_url,
                             spot_endpoint_url=spot_endpoint_url)
    for update in result.updates:
        out.print(escape(update.describe()))
    priced = sum(1 for update in result.updates if update.new is not None)
    out.print(f"wrote {result.path} ({priced} of {len(result.updates)} {provider} offers priced)")


@click.command()
@click.option("--gpu-hours-per-month", "hours", type=NON_NEGATIVE, required=True, metavar="H",
              help="GPU-hours of use in a month.")
@click.option("--runs", "run_ids", multiple=True, metavar="RUN",
              help="Take training throughput from this run; repeatable (default: the newest run per GPU model).")
@click.option("--gpu", help="Only options whose accelerator contains this text (compare like with like).")
@click.option("--purchase-usd", type=NON_NEGATIVE, help="An owned box to compare: its purchase price.")
@click.option("--lifetime-years", type=POSITIVE, default=3.0, show_default=True, help="The owned box's life.")
@click.option("--watts", type=NON_NEGATIVE, default=0.0, show_default=True, help="The owned box's power draw.")
@click.option("--kwh-usd", type=NON_NEGATIVE, default=0.15, show_default=True, help="Price of a kWh for the owned box.")
@click.option("--owned-gpu", metavar="MODEL", help="The owned box's GPU model, e.g. 'RTX 4090' (prices its images).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def breakeven(
    hours: float,
    run_ids: tuple[str, ...],
    gpu: str | None,
    purchase_usd: float | None,
    lifetime_years: float,
    watts: float,
    kwh_usd: float,
    owned_gpu: str | None,
    as_json: bool,
) -> None:
    """Price each option for a month of GPU-hours, and the hours above which owning beats renting.

    Options: the catalog's offers (cloud on-demand and spot, rented by the month, owned), the inventory's boxes
    (rented by the month, owned, or by the hour), and an owned box given with --purchase-usd. Dollars per
    million images use each option's own GPU: the figure a run measured on it, else a run on another GPU scaled
    by the published ResNet-50 ratio of the two GPUs, else (when no run measured a GPU) the published ResNet-50
    figure; the "basis" column says which.

    \b
    Examples:
      orchestrate breakeven --gpu-hours-per-month 200
      orchestrate breakeven --gpu-hours-per-month 200 --gpu V100 --purchase-usd 2000 --watts 350
      orchestrate breakeven --gpu-hours-per-month 120 --purchase-usd 1800 --watts 450 --owned-gpu 'RTX 4090'
      orchestrate breakeven --gpu-hours-per-month 50 --runs r-20261128-180102-3fa9 --json
    """
    from rich.table import Table

    from orchestrator import api

    if hours < 0 or hours != hours:
        raise SpecError("--gpu-hours-per-month", hours, "a number of GPU-hours >= 0")
    owned: dict[str, float | str] | None = None
    if purchase_usd is not None:
        owned = {"purchase_usd": purchase_usd, "lifetime_years": lifetime_years, "watts": watts, "kwh_usd": kwh_usd,
                 "gpu": owned_gpu or ""}
    elif owned_gpu:
        raise SpecError("--owned-gpu", owned_gpu, "used with --purchase-usd (the owned box it describes)")
    result = api.breakeven(hours, run_ids, gpu=gpu, owned=owned)
    if as_json:
        click.echo(json_text(asdict(result)))
        return
    out.print(escape(result.workload))
    table = Table(title=f"one month at {hours:g} GPU-hours")
    for column in ("option", "kind", "gpu", "fixed/month", "per GPU-hour", "month", "img/s/GPU", "basis",
                   "$/M images", "owning wins"):
        numeric = column in ("fixed/month", "per GPU-hour", "month", "img/s/GPU", "$/M images")
        table.add_column(column, justify="right" if numeric else "left")
    for row in result.rows:
        option = row.option
        per_million = "" if row.usd_per_million_images is None else f"${row.usd_per_million_images:.2f}"
        figure = "" if row.throughput is None else f"{row.throughput.images_per_sec_per_gpu:,.1f}"
        basis = "" if row.throughput is None else row.throughput.basis
        wins = ""
        if row.break_even is not None:
            be = row.break_even
            wins = be.owning_wins if be.hours is None else f"{be.owning_wins} {be.hours:.1f} h"
            if be.owning_wins_images is not None:
                wins += "\n" + (be.owning_wins_images if be.million_images is None
                                else f"{be.owning_wins_images} {be.million_images:,.1f}M img")
        month = f"${row.monthly_cost_usd:,.2f}" + (" (over capacity)" if row.over_capacity else "")
        table.add_row(escape(option.name), option.kind, escape(option.accelerator), f"${option.fixed_per_month:,.2f}",
                      f"${option.per_gpu_hour:.4f}", month, figure, basis, per_million, wins)
    out.print(table)
    out.print("[dim]owning wins: in GPU-hours of use a month, and (second line, where both have an img/s figure) in "
              "images a month, each option running the hours its own GPU needs for them; where each img/s figure "
              "comes from: --json (rows[].throughput.detail)[/]")
    owned_name = next((row.break_even.owned for row in result.rows if row.break_even is not None), None)
    if owned_name is None:
        out.print("no owned box to compare: add one to the inventory (price: owned) or pass --purchase-usd")
        return
    out.print(f"against the cheapest owned box at these hours, {escape(owned_name)}:")
    for row in result.rows:
        if row.break_even is not None:
            out.print("  " + escape(row.break_even.describe()))
