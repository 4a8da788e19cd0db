'use strict';
// Takes code snippets verbatim out of a docs page saved as flattened text, and strips their
// TypeScript types.
//
// The saved page has lost most line breaks inside code blocks: the lines of one block are run
// together, joined by a space where the next line was indented. That is harmless for JavaScript
// (every statement ends in `;` or a brace), except for `//` comments, which would now swallow
// the code that followed them on the next line. So comments are removed while scanning, and a
// comment is taken to end where code visibly resumes (see commentEnd); the comment is replaced
// by the line break it originally ended with. Nothing else in a snippet is touched.
//
// A snippet is located by its section heading ("Section titled “Basic Connection”") and the
// text it starts with, then taken by bracket matching: a whole block (class, interface,
// function) or a number of top-level statements.

const ts = require('typescript');

const KEYWORD_WITH_PAREN = new Set(['if', 'for', 'while', 'switch', 'catch']);
const IDENT = /^[A-Za-z_$][\w$]*$/;

// Where a `//` comment that starts at `from` (just after the slashes) ends: at the line break,
// or earlier at the first word that is code rather than prose: one that contains code
// punctuation (`this.x`, `position:`, `}));`), `if (`, or `const x =` (also glued to the
// comment's last word, as in "// Usageconst x = ...", where the original line break had no
// indentation to turn into a space).
function commentEnd(text, from) {
  let lineEnd = text.indexOf('\n', from);
  if (lineEnd === -1) lineEnd = text.length;
  const words = [];
  const re = /\S+/g;
  const rest = text.slice(from, lineEnd);
  let m;
  while ((m = re.exec(rest)) !== null) words.push({ word: m[0], at: from + m.index });
  for (let k = 0; k < words.length; k++) {
    const { word, at } = words[k];
    const next = words[k + 1];
    const after = words[k + 2];
    if (/[.(){}[\];:=,`]/.test(word)) return at;
    if (KEYWORD_WITH_PAREN.has(word) && next && next.word.startsWith('(')) return at;
    const decl = /^(.*?)(const|let|var)$/.exec(word);
    if (decl && next && IDENT.test(next.word) && after && after.word.startsWith('=')) {
      return at + decl[1].length;
    }
  }
  return lineEnd;
}

// Scan code from `start`; `mode` is 'block' (ends with the `}` that closes the first top-level
// bracket pair, e.g. a class or function body) or a number of top-level statements (each ending
// in `;`). Returns the code with comments removed.
function take(text, start, mode, limit) {
  const stack = []; // '(', '[', '{', '${' (expression in a template) and '`' (template text)
  let out = '';
  let statements = 0;
  let i = start;
  while (i < limit) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (top === '`') {
      if (c === '\\') {
        out += text.slice(i, i + 2);
        i += 2;
      } else if (c === '`') {
        stack.pop();
        out += c;
        i += 1;
      } else if (c === '$' && text[i + 1] === '{') {
        stack.push('${');
        out += '${';
        i += 2;
      } else {
        out += c;
        i += 1;
      }
      continue;
    }
    if (c === '/' && text[i + 1] === '/') {
      i = commentEnd(text, i + 2);
      out += '\n';
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < limit && text[j] !== c) {
        if (text[j] === '\\') j += 1;
        if (text[j] === '\n') throw new Error(`unterminated string at ${i}`);
        j += 1;
      }
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    out += c;
    i += 1;
    if (c === '`' || c === '(' || c === '[' || c === '{') {
      stack.push(c);
    } else if (c === ')' || c === ']' || c === '}') {
      const open = stack.pop();
      const want = { ')': '(', ']': '[', '}': open === '${' ? '${' : '{' }[c];
      if (open !== want) throw new Error(`unbalanced '${c}' at ${i - 1}: ${JSON.stringify(out.slice(-80))}`);
      if (mode === 'block' && c === '}' && stack.length === 0) return out;
    } else if (c === ';' && stack.length === 0 && mode !== 'block') {
      statements += 1;
      if (statements === mode) return out;
    }
  }
  throw new Error(`snippet starting ${JSON.stringify(text.slice(start, start + 60))} does not end in its section`);
}

function indexOnce(text, needle) {
  const at = text.indexOf(needle);
  if (at === -1) throw new Error(`not in the page: ${JSON.stringify(needle)}`);
  if (text.indexOf(needle, at + 1) !== -1) throw new Error(`more than once in the page: ${JSON.stringify(needle)}`);
  return at;
}

// The TypeScript text of one snippet: {section, start, take: 'block' | number of statements}.
function snippet(page, spec) {
  const heading = `Section titled “${spec.section}”`;
  const sectionStart = indexOnce(page, heading) + heading.length;
  let sectionEnd = page.indexOf('Section titled “', sectionStart);
  if (sectionEnd === -1) sectionEnd = page.length;
  const at = page.indexOf(spec.start, sectionStart);
  if (at === -1 || at >= sectionEnd) {
    throw new Error(`section ${JSON.stringify(spec.section)} has no snippet starting ${JSON.stringify(spec.start)}`);
  }
  return take(page, at, spec.take, sectionEnd);
}

// Types stripped, nothing else: no type checking, modern output (class fields, `?.`) as is.
function transpile(source, name) {
  const result = ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None },
    reportDiagnostics: true,
    fileName: `${name}.ts`,
  });
  const errors = (result.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) {
    const messages = errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    throw new Error(`snippet ${name} does not parse: ${messages.join('; ')}\n${source}`);
  }
  return result.outputText;
}

module.exports = { commentEnd, snippet, take, transpile };
