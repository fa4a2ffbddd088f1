// Sonyflake IDs made by the npm package "sonyflake" (test/interop/
// package.json), for test/t/025_interop.pl to decode with snowflake's
// functions.  One line per ID on standard output:
//
//   id <TAB> from_ms <TAB> to_ms <TAB> seq <TAB> lib_ms <TAB> lib_machine <TAB> lib_seq
//
// from_ms, to_ms and seq are what this script asked for: the start of the
// time unit (ms since 1970) twice and the sequence, or for nextId() the
// clock read just before and just after the call and no sequence (\N);
// lib_* is what the package's own Sonyflake.decompose() reads back from the
// ID.
//
//   node sonyflake_ids.js clock MACHINE COUNT
//       COUNT IDs of Sonyflake's standard layout (39 bits of 10 ms units
//       since 2014-09-01 UTC | 8-bit sequence | 16-bit machine id) from the
//       clock, with Sonyflake's rule for the sequence: 0 at each new unit, +1
//       within one, and a full unit waited for the next.
//   node sonyflake_ids.js compose MACHINE
//       standard IDs for the "unix_ms sequence" lines on standard input (keys
//       that a Sonyflake machine made in the past, or with its clock ahead).
//   node sonyflake_ids.js shipped MACHINE COUNT
//       COUNT IDs from the package's nextId() as it ships: its unit is 1 ms,
//       not Sonyflake's 10 ms (start time 2014-09-01 given to it, since its
//       default, 1970, makes IDs beyond 63 bits).
//
// The package composes (time - epoch) << 24 | sequence << 16 | machine id
// with the time and epoch in whatever unit it is given: for the standard
// layout both are given in 10 ms units, so that the bits are the package's
// and the unit is Sonyflake's.
'use strict';

const { Sonyflake } = require('sonyflake');

const START_MS = Date.UTC(2014, 8, 1);	// Sonyflake's default start time
const UNIT_MS = 10;

const [mode, machineArg, countArg] = process.argv.slice(2);
const machineId = Number(machineArg);
if (!Number.isInteger(machineId) || machineId < 0 || machineId > 65535)
	throw new Error(`machine id must be 0..65535, not ${machineArg}`);

function line(id, fromMs, toMs, seq, libMs, parts)
{
	return [id, fromMs, toMs, seq, libMs, parts.machineId, parts.sequence].join('\t');
}

// Standard layout: the package given time and epoch in 10 ms units.
const standard = new Sonyflake({ machineId, epoch: START_MS / UNIT_MS });

function standardLine(unit, sequence)
{
	const id = standard.generateCustomId({ timestamp: unit, sequence });
	const parts = Sonyflake.decompose(id, { epoch: START_MS / UNIT_MS });
	return line(id, unit * UNIT_MS, unit * UNIT_MS, sequence, parts.timestamp * UNIT_MS, parts);
}

const out = [];
if (mode === 'clock')
{
	let last = -1;
	let sequence = 0;
	for (let i = 0; i < Number(countArg); i++)
	{
		let unit = Math.floor(Date.now() / UNIT_MS);
		if (unit === last)
		{
			sequence = (sequence + 1) & 0xff;
			if (sequence === 0)
				while (unit <= last)
					unit = Math.floor(Date.now() / UNIT_MS);
		}
		else
			sequence = 0;
		last = unit;
		out.push(standardLine(unit, sequence));
	}
}
else if (mode === 'compose')
{
	const input = require('fs').readFileSync(0, 'utf8');
	for (const request of input.split('\n').filter((l) => l.trim() !== ''))
	{
		const [ms, sequence] = request.trim().split(/\s+/).map(Number);
		out.push(standardLine(Math.floor(ms / UNIT_MS), sequence));
	}
}
else if (mode === 'shipped')
{
	const shipped = new Sonyflake({ machineId, epoch: START_MS });
	for (let i = 0; i < Number(countArg); i++)
	{
		const fromMs = Date.now();
		const id = shipped.nextId();
		const toMs = Date.now();
		const parts = shipped.decompose(id);
		out.push(line(id, fromMs, toMs, '\\N', parts.timestamp, parts));
	}
}
else
	throw new Error(`unknown mode ${mode}: clock, compose or shipped`);
console.log(out.join('\n'));
