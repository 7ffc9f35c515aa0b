import { Option } from 'commander';
import { type Config, defaultConfig, loadConfig } from '../config/load.js';

/** `-c, --config <file>`, which every command that reads the config takes. */
export const configOption = () => new Option('-c, --config <file>', 'YAML config file (default: built-in defaults)');

/** The config file given with --config, else the built-in defaults. */
export function readConfig(path: string | undefined): Config {
  return path === undefined ? defaultConfig() : loadConfig(path);
}

/** Commander's argParser for a repeatable option. */
export const collect = (value: string, prev: string[] = []) => [...prev, value];
