import { X509Certificate, createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Certificates made at test time with openssl: a test CA and leaf certificates it signs for
 * 127.0.0.1 and localhost, with the serial and validity a test asks for (an expired one too:
 * `openssl ca` takes explicit dates, which `req -x509 -days` cannot put in the past).
 * fake-apns.ts `selfSignedCert` stays for the fake providers, which need one throwaway pair.
 */
export interface TestCa {
  dir: string;
  certFile: string;
  keyFile: string;
  pem: string;
}

export interface TestCert {
  certFile: string;
  keyFile: string;
  pem: string;
  /** As Node's X509Certificate gives them ("AB:CD:…", uppercase hex). */
  fingerprint256: string;
  serialNumber: string;
  /** base64 SHA-256 of the public key (SPKI), for Chromium's --ignore-certificate-errors-spki-list. */
  spki: string;
}

const CA_CNF = `[ca]
default_ca = test
[test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
`;

/** A CA (EC P-256, valid two days) in `dir`, ready to sign leaves. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'ca.key');
  const certFile = join(dir, 'ca.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=notify test CA'], { cwd: dir });
  writeFileSync(join(dir, 'ca.cnf'), CA_CNF);
  writeFileSync(join(dir, 'index.txt'), '');
  return { dir, certFile, keyFile, pem: readFileSync(certFile, 'utf8') };
}

const asn1Time = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/**
 * A leaf for 127.0.0.1 and localhost signed by `ca`, with its own key: `<name>.pem`, `<name>.key`
 * in the CA's folder. Valid from an hour ago for a day unless `notBefore`/`notAfter` say otherwise.
 */
export async function issueCert(ca: TestCa, name: string, o: { serial: number; notBefore?: Date; notAfter?: Date }): Promise<TestCert> {
  const keyFile = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const certFile = join(ca.dir, `${name}.pem`);
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`], { cwd: ca.dir });
  writeFileSync(join(ca.dir, 'serial'), `${o.serial.toString(16).padStart(2, '0')}\n`);
  const from = o.notBefore ?? new Date(Date.now() - 3600_000);
  const to = o.notAfter ?? new Date(Date.now() + 24 * 3600_000);
  await run(
    'openssl',
    ['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', ca.certFile, '-keyfile', ca.keyFile, '-in', csr, '-out', certFile, '-extensions', 'leaf', '-startdate', asn1Time(from), '-enddate', asn1Time(to)],
    { cwd: ca.dir },
  );
  const pem = readFileSync(certFile, 'utf8');
  const x = new X509Certificate(pem);
  const spki = createHash('sha256').update(x.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  return { certFile, keyFile, pem, fingerprint256: x.fingerprint256, serialNumber: x.serialNumber, spki };
}

/** An intermediate CA signed by `parent`, in its own folder `<parent dir>/<name>`, ready to sign leaves. */
export async function issueIntermediateCa(parent: TestCa, name: string, serial: number): Promise<TestCa> {
  const dir = join(parent.dir, name);
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'ca.key');
  const csr = join(dir, 'ca.csr');
  const certFile = join(dir, 'ca.pem');
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`], { cwd: dir });
  writeFileSync(join(parent.dir, 'serial'), `${serial.toString(16).padStart(2, '0')}\n`);
  await run('openssl', ['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', parent.certFile, '-keyfile', parent.keyFile, '-in', csr, '-out', certFile, '-extensions', 'intermediate', '-days', '2'], { cwd: parent.dir });
  writeFileSync(join(dir, 'ca.cnf'), CA_CNF);
  writeFileSync(join(dir, 'index.txt'), '');
  return { dir, certFile, keyFile, pem: readFileSync(certFile, 'utf8') };
}
